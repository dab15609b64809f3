"""``diaspora events`` against a real tree: a crash and its restart appear, live and replayed."""

from __future__ import annotations

import json
import signal

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from diaspora.cli import main
from diaspora.errors import ConfigError
from diaspora.fabric import Fabric
from diaspora.observe._eventscmd import parse_time, read_recorded
from diaspora.testing import Injector
from diaspora.testing.plugin import WorkflowRunner
from diaspora.workflow import parse_config
from tests.observe.cli_helpers import cli_env, diaspora_cmd, quiet_logs_restored
from tests.observe.trees import SLOW

pytestmark = pytest.mark.anyio


async def test_events_follow_shows_an_injected_crash_and_the_restart_then_replays_them(
    fabric: Fabric, workflow: WorkflowRunner, injector: Injector, tmp_path
) -> None:
    await fabric.ensure_stream("obs.in")
    url = fabric.urls[0]
    async with workflow(parse_config(SLOW)) as wf:
        await wf.wait_running()
        cmd = diaspora_cmd("events", "--url", url, "--follow", "--actor", "root.slow")
        lines: list[str] = []
        async with await anyio.open_process(cmd, env=cli_env()) as proc:
            assert proc.stdout is not None
            text = TextReceiveStream(proc.stdout)
            with anyio.fail_after(60):
                buffer = ""
                async for chunk in text:
                    buffer += chunk
                    *done, buffer = buffer.split("\n")
                    lines += done
                    if any(" started " in line for line in lines) and not injector.records:
                        await injector.crash("root.slow")  # the replay reached the start
                        await fabric.publish("obs.in", {"i": 0})
                    if any(" restarted " in line for line in lines):
                        break
            proc.send_signal(signal.SIGINT)
            with anyio.fail_after(20):
                assert await proc.wait() == 0  # Ctrl-C ends it cleanly
    kinds = [line.split()[4] for line in lines]
    assert "crashed" in kinds
    assert kinds.index("crashed") < kinds.index("restarted")
    crash = lines[kinds.index("crashed")]
    assert "root.slow" in crash
    assert "injected crash" in crash

    # replayed afterwards, as JSON lines, narrowed to the supervisor's decisions
    done = await anyio.run_process(
        diaspora_cmd("events", "--url", url, "--json", "--category", "supervision",
                     "--since", "10m"),
        env=cli_env(),
    )  # fmt: skip
    records = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert {r["category"] for r in records} == {"supervision"}
    assert [r["kind"] for r in records if r["kind"] == "restarted"] == ["restarted"]
    assert all(isinstance(r["seq"], int) for r in records)
    recorded = tmp_path / "events.jsonl"
    recorded.write_bytes(done.stdout)
    assert [s.event.kind for s in read_recorded(str(recorded))] == [r["kind"] for r in records]


def test_events_needs_a_url_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with quiet_logs_restored():
        assert main(["events"]) == 2
    assert "pass --url" in capsys.readouterr().err


def test_times_are_iso_unix_or_an_age_and_a_bad_one_is_named() -> None:
    assert parse_time("2026-12-01T18:00:00Z") == 1796148000.0
    assert parse_time("1.5h", now=7200.0) == 1800.0
    with pytest.raises(ConfigError, match=r"--until 'yesterday': not a time"):
        parse_time("yesterday", option="--until")
