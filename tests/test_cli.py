"""The ``diaspora`` command in-process: which fabric URL it hands the Fabric, and the
exit statuses of ``check`` (the subprocess runs are in tests/supervision/test_run_command.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from diaspora import cli
from diaspora.errors import FabricUnavailable
from diaspora.exitcode import ExitCode
from diaspora.log import configure_logging

configure_logging()  # before capsys: main() would bind the captured stream otherwise

FABRIC = '[fabric]\nurl = "nats://from-the-file:4222"\n'
TREE = '[supervisor]\n[[supervisor.children]]\nid = "sum"\nactor = "actors.examples:RunningSum"\n'
ROOT = Path(__file__).resolve().parent.parent


class FabricSpy:
    """Stands in for Fabric: records the URL it was given, then fails to connect."""

    urls: list[object] = []

    def __init__(self, url: object = None, **_: Any) -> None:
        FabricSpy.urls.append(url)

    async def __aenter__(self) -> FabricSpy:
        raise FabricUnavailable("spy: not connecting")

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> type[FabricSpy]:
    monkeypatch.syspath_prepend(str(ROOT))  # actors.examples
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "Fabric", FabricSpy)
    FabricSpy.urls = []
    return FabricSpy


@pytest.mark.parametrize(
    ("argv", "file_url", "expected"),
    [
        (["--url", "nats://from-the-flag:4222"], True, "nats://from-the-flag:4222"),
        ([], True, ("nats://from-the-file:4222",)),
        ([], False, None),  # the Fabric itself reads $DIASPORA_URL, then embeds a server
    ],
    ids=["flag", "file", "neither"],
)
def test_run_hands_the_fabric_the_flag_or_the_files_url_never_the_environment(
    spy: type[FabricSpy],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    file_url: bool,
    expected: object,
) -> None:
    monkeypatch.setenv("DIASPORA_URL", "nats://from-the-environment:4222")
    Path("tree.toml").write_text((FABRIC if file_url else "") + TREE)
    assert cli.main(["run", "tree.toml", *argv]) == ExitCode.FAILED
    assert spy.urls == [expected]


def test_check_exits_ok_or_usage(spy: type[FabricSpy], capsys: pytest.CaptureFixture[str]) -> None:
    Path("tree.toml").write_text(TREE)
    assert cli.main(["check", "tree.toml"]) == ExitCode.OK
    Path("bad.toml").write_text("[supervisor]\nintensity = -1\n")
    assert cli.main(["check", "bad.toml"]) == ExitCode.USAGE
    assert "bad.toml: supervisor.intensity: -1 must be >= 0" in capsys.readouterr().err
    assert spy.urls == []  # check never connects
