"""``diaspora run FILE`` as a real process: a SIGKILLed process node is restarted and
its outputs stay exactly-once; SIGTERM stops the tree and exits 0; a root supervisor
that gives up exits 1; no child process outlives ``diaspora run``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import psutil
import pytest

from diaspora import codec
from diaspora.events import NodeStarted, decode_record
from diaspora.fabric import Fabric, Inbound
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from tests.actor.test_exactly_once import expected_sums, publish_numbers, stream_count

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
RUNNING_SUM = ROOT / "supervisors" / "running_sum.toml"
N = 5000


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextmanager
def diaspora_run(config: Path, url: str, stderr: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DIASPORA_LOG_LEVEL="INFO")
    env.pop("DIASPORA_URL", None)
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "diaspora", "run", str(config), "--url", url],
            cwd=ROOT,
            env=env,
            stderr=err,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def exit_status(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    return await anyio.to_thread.run_sync(lambda: proc.wait(timeout=timeout))


@asynccontextmanager
async def node_pids(fabric: Fabric) -> AsyncIterator[list[int]]:
    """The pid of every process node started, from the node_started events, in order."""
    pids: list[int] = []

    async def on_event(msg: Inbound) -> None:
        event = decode_record(codec.decode(msg.data))
        if isinstance(event, NodeStarted):
            pids.append(event.pid)

    async with fabric.subscription("diaspora.events.supervision.>", on_event, flush=True):
        yield pids


async def test_killed_process_node_is_restarted_outputs_stay_exactly_once_and_sigterm_exits_0(
    fabric: Fabric, tmp_path: Path
) -> None:
    await fabric.ensure_stream("numbers")

    async def sums_at_least(n: int) -> bool:
        return await stream_count(fabric, "sums") >= n

    async with node_pids(fabric) as pids:
        with diaspora_run(RUNNING_SUM, fabric.urls[0], tmp_path / "stderr") as proc:
            await wait_until(lambda: len(pids) == 1, timeout=30, what="first node_started")
            async with anyio.create_task_group() as tg:
                tg.start_soon(publish_numbers, fabric, N, 0.1)
                await wait_until(lambda: sums_at_least(1500), timeout=30, interval=0.005)
                os.kill(pids[0], signal.SIGKILL)
                at_kill = await stream_count(fabric, "sums")
                await wait_until(lambda: len(pids) == 2, timeout=30, what="node restarted")
            await wait_until(lambda: sums_at_least(N), timeout=60, interval=0.05)
            proc.send_signal(signal.SIGTERM)
            assert await exit_status(proc) == 0
    assert at_kill < N  # killed mid-stream
    assert pids[0] != pids[1]
    stored = await read_stream(fabric, "sums")
    assert [m.data for m in stored] == expected_sums(N)
    for pid in pids:
        assert gone(pid)
    log = (tmp_path / "stderr").read_text()
    assert "killed by SIGKILL" in log
    assert '"event": "restarted"' in log


async def test_root_supervisor_giving_up_exits_1(fabric: Fabric, tmp_path: Path) -> None:
    config = tmp_path / "crashy.toml"
    config.write_text(
        """
[supervisor]
intensity = 1
period = 60

[[supervisor.children]]
id = "bad"
actor = "tests.supervision.node_workers:AlwaysCrashes"
process = true
"""
    )
    await fabric.ensure_stream("numbers")
    await fabric.publish("numbers", {"x": 1})
    with diaspora_run(config, fabric.urls[0], tmp_path / "stderr") as proc:
        assert await exit_status(proc) == 1
    log = (tmp_path / "stderr").read_text()
    assert '"event": "gave_up"' in log
    assert "AlwaysCrashes at seq 1" in log


async def test_child_failing_to_start_exits_3(fabric: Fabric, tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text(
        '[supervisor]\n[[supervisor.children]]\nid = "bad"\n'
        'actor = "tests.supervision.node_workers:FailsOnStart"\n'
    )
    with diaspora_run(config, fabric.urls[0], tmp_path / "stderr") as proc:
        assert await exit_status(proc) == 3
    assert "FailsOnStart: cannot start" in (tmp_path / "stderr").read_text()


async def test_process_nodes_die_with_a_sigkilled_diaspora_run(
    fabric: Fabric, tmp_path: Path
) -> None:
    async with node_pids(fabric) as pids:
        with diaspora_run(RUNNING_SUM, fabric.urls[0], tmp_path / "stderr") as proc:
            await wait_until(lambda: len(pids) == 1, timeout=30, what="node_started")
            proc.kill()
            assert await exit_status(proc) == -signal.SIGKILL
            await wait_until(lambda: gone(pids[0]), timeout=10, what="node process gone")
