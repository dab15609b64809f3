"""``diaspora run`` as a newcomer meets it, as a real process: the streams the tree consumes
exist before any actor starts (a plain nats-py client loses nothing); with no URL the embedded
server's store and the actors' state outlive the run (``--ephemeral``: they do not); the
status lines on stderr, as JSON with ``--json``, none with ``--quiet``; the current directory
is importable for ``actor = "mymodule:Cls"``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import msgpack
import nats
import pytest

from diaspora.fabric import Fabric
from diaspora.testing import read_stream, wait_until

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
SUM_TREE = (
    '[supervisor]\n[[supervisor.children]]\nid = "sum"\nactor = "actors.examples:RunningSum"\n'
)
CONNECTING = re.compile(r"^diaspora: connecting to (nats://\S+)", re.M)


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def err(self) -> str:
        return self.stderr.read_text()

    def out(self) -> str:
        return self.stdout.read_text()

    async def wait_for(self, pattern: str, *, stdout: bool = False) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.out() if stdout else self.err(), re.M)
            if match is not None:
                found.append(match)
            assert self.proc.poll() is None or match, f"diaspora run exited:\n{self.err()}"
            return match is not None

        await wait_until(seen, timeout=60, what=f"{pattern!r} from diaspora run")
        return found[0]

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return await anyio.to_thread.run_sync(lambda: self.proc.wait(timeout=60))


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DIASPORA_LOG_LEVEL="WARNING", **extra)
    for name in ("DIASPORA_URL", "DIASPORA_STATE_DIR"):
        if name not in extra:
            env.pop(name, None)
    return env


@contextmanager
def diaspora_run(cwd: Path, *args: str, name: str = "run") -> Iterator[Running]:
    out, err = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "diaspora", "run", *args],
            cwd=cwd,
            env=environment(),
            stdout=stdout,
            stderr=stderr,
        )
    try:
        yield Running(proc, out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def totals(fabric: Fabric) -> list[int]:
    return [m.data["total"] for m in await read_stream(fabric, "sums", missing_ok=True)]


async def totals_are(fabric: Fabric, want: list[int]) -> None:
    async def done() -> bool:
        return await totals(fabric) == want

    await wait_until(done, timeout=60, what=f"sums {want}")


async def test_a_plain_client_publishing_before_the_consuming_actor_starts_loses_nothing(
    fabric: Fabric, tmp_path: Path
) -> None:
    gate, waiting = tmp_path / "gate", tmp_path / "waiting"
    (tmp_path / "tree.toml").write_text(
        f"""
[supervisor]
[[supervisor.children]]
id = "slow"                 # starts first, and only once the gate is open
actor = "tests.cli_actors:SlowStart"
args = {{ gate = "{gate}", waiting = "{waiting}" }}

[[supervisor.children]]
id = "sum"                  # reads `numbers`, starts after `slow`
actor = "actors.examples:RunningSum"
"""
    )
    with diaspora_run(tmp_path, "tree.toml", "--url", fabric.urls[0]) as run:
        await wait_until(waiting.exists, timeout=60, what="the slow actor waiting")
        nc = await nats.connect(fabric.urls[0])
        try:
            for x in (1, 2, 3):
                await nc.publish("numbers", msgpack.packb({"x": x}))  # core NATS: no ack
            await nc.flush()
            await nc.jetstream().publish("numbers", msgpack.packb({"x": 4}))
        finally:
            await nc.close()
        gate.touch()
        await totals_are(fabric, [1, 3, 6, 10])
        assert await run.stop() == 0


RECORDED = """
[[supervisor.children]]
id = "recorded"             # keeps a producer history: local state under the state dir
actor = "tests.cli_actors:Recorded"
"""


async def test_the_embedded_state_outlives_a_run_and_status_lines_say_what_runs(
    tmp_path: Path,
) -> None:
    (tmp_path / "tree.toml").write_text(SUM_TREE + RECORDED)

    # a first run: text status lines on stderr
    with diaspora_run(tmp_path, "tree.toml", "--every", "0.2", name="first") as run:
        url = (await run.wait_for(CONNECTING.pattern)).group(1)
        assert f"connecting to {url} (embedded nats-server, state in ./.diaspora/)" in run.err()
        await run.wait_for(
            rf"^diaspora: running 'root' on {re.escape(url)}: 2 actors "
            r"\(root\.sum, root\.recorded\); "
            "Ctrl-C to stop$"
        )
        async with Fabric(url) as fabric:
            for x in (1, 2, 3):
                await fabric.publish("numbers", {"x": x})
            await totals_are(fabric, [1, 3, 6])
        await run.wait_for(r"^diaspora: 6 inputs handled, 6 outputs, 0 restarts, lag 0$")
        assert await run.stop() == 0
    assert "diaspora: state kept in ./.diaspora/: run again to resume" in run.err()
    assert (tmp_path / ".diaspora" / "jetstream").is_dir()
    assert any((tmp_path / ".diaspora" / "history").iterdir())  # root.recorded's history

    # a second run resumes from the checkpoint, the streams intact: JSON lines on stdout
    with diaspora_run(tmp_path, "tree.toml", "--json", "--every", "0.2", name="second") as run:
        url = json.loads((await run.wait_for(r"^.*connecting.*$", stdout=True)).group(0))["url"]
        await run.wait_for(r'"status": "running"', stdout=True)
        async with Fabric(url) as fabric:
            assert await totals(fabric) == [1, 3, 6]
            for x in (4, 5):
                await fabric.publish("numbers", {"x": x})
            await totals_are(fabric, [1, 3, 6, 10, 15])
        await run.wait_for(r'"handled": 4, "outputs": 4, "restarts": 0, "lag": 0', stdout=True)
        assert await run.stop() == 0
    lines = [json.loads(line) for line in run.out().splitlines()]
    assert lines[0] == {
        "status": "connecting",
        "url": url,
        "embedded": True,
        "state_dir": str((tmp_path / ".diaspora").resolve()),
    }
    assert lines[1] == {"status": "running", "url": url, "actors": ["root.sum", "root.recorded"]}
    assert {line["status"] for line in lines[2:]} >= {"summary", "stopped", "state_kept"}
    assert "diaspora:" not in run.err()

    # --ephemeral starts from nothing and keeps nothing
    kept = sorted(p.name for p in (tmp_path / ".diaspora").rglob("*"))
    with diaspora_run(tmp_path, "tree.toml", "--ephemeral", name="third") as run:
        url = (await run.wait_for(CONNECTING.pattern)).group(1)
        assert "(embedded nats-server, no state kept (--ephemeral))" in run.err()
        await run.wait_for(r"^diaspora: running ")
        async with Fabric(url) as fabric:
            assert await totals(fabric) == []
            await fabric.publish("numbers", {"x": 7})
            await totals_are(fabric, [7])
        assert await run.stop() == 0
    assert "state kept in" not in run.err()
    assert sorted(p.name for p in (tmp_path / ".diaspora").rglob("*")) == kept


async def test_quiet_writes_no_status_line(fabric: Fabric, tmp_path: Path) -> None:
    (tmp_path / "tree.toml").write_text(SUM_TREE)
    await fabric.ensure_stream("numbers")
    await fabric.publish("numbers", {"x": 2})
    args = ("tree.toml", "--quiet", "--every", "0.2", "--url", fabric.urls[0])
    with diaspora_run(tmp_path, *args) as run:
        await totals_are(fabric, [2])
        await anyio.sleep(0.5)  # room for summary lines, which must not come
        assert await run.stop() == 0
    assert run.out() == ""
    assert "diaspora:" not in run.err()


def test_the_current_directory_is_importable_for_actor_paths(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("diaspora")  # the console script: not python -m
    (tmp_path / "mymodule.py").write_text(
        "from diaspora import Actor, Message\n\n\n"
        "class Echo(Actor):\n"
        '    inputs = ("words",)\n\n'
        "    async def handle(self, msg: Message) -> None:\n"
        '        await self.emit("echoes", msg.data)\n'
    )
    (tmp_path / "tree.toml").write_text(
        '[supervisor]\n[[supervisor.children]]\nid = "echo"\nactor = "mymodule:Echo"\n'
    )
    done = subprocess.run(
        [str(script), "check", "tree.toml"],
        cwd=tmp_path,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "tree.toml: ok: supervisor 'root'" in done.stdout
