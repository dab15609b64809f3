"""The parsl provider against Parsl's LocalProvider: a pool of Parsl blocks at its minimum, a
worker killed (its process, and then its whole block) and the site healed, the actor resuming."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import anyio
import pytest

from diaspora.compute import PoolActor, PoolController, PoolSpec, SiteQuota
from diaspora.events import Healed, MemorySink
from diaspora.fabric import Fabric
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import ActorStart
from tests.compute.pool_actors import Tally

pytest.importorskip("parsl", reason='the parsl provider needs Parsl: pip install "diaspora[pools]"')

from diaspora.workflow._parsl import ParslProvider

pytestmark = pytest.mark.anyio


async def tallied(fabric: Fabric, n: int) -> bool:
    return len(await read_stream(fabric, "tallies", missing_ok=True)) >= n


@pytest.mark.parametrize("kill", ["worker", pytest.param("block", marks=pytest.mark.slow)])
async def test_a_parsl_pool_heals_a_killed_worker_and_the_actor_resumes(
    fabric: Fabric, kill: str
) -> None:
    spec = PoolSpec(
        "recon",
        {"hpc": SiteQuota(1, 2)},
        provider="parsl",
        actors=(PoolActor("root.tally", ActorStart(Tally), site="hpc"),),
    )
    await fabric.ensure_stream("jobs")
    await fabric.ensure_stream("tallies")
    sink = MemorySink()
    provider = ParslProvider(  # its run_dir: a temporary directory it deletes on exit
        {"hpc": fabric}, path="root", blocks={"hpc": 2}, heartbeat_timeout=3.0
    )
    controller = PoolController(spec, provider, events=sink)
    orphans: set[int] = set()
    try:
        await _run(controller, provider, sink, fabric, kill, orphans)
    finally:
        for orphan in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGKILL)


async def _run(
    controller: PoolController,
    provider: ParslProvider,
    sink: MemorySink,
    fabric: Fabric,
    kill: str,
    orphans: set[int],
) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(controller.run)
        with anyio.fail_after(120):
            await controller.ready.wait()
        for n in range(5):
            await fabric.publish("jobs", {"n": n})
        await wait_until(lambda: tallied(fabric, 5), timeout=30, what="5 tallies")
        (pid,) = provider.pids("hpc")
        if kill == "block":  # the worker and the Parsl manager that runs it: the block is lost
            manager = _parent(pid)
            # the manager's other processes (idle workers, its resource tracker) outlive it
            # as orphans: this test started them, so it kills them after it is done
            orphans.update(_descendants(manager))
            os.kill(manager, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()
        await wait_until(lambda: bool(sink.of(Healed)), timeout=120, what="the hpc site healed")
        print(
            f"\nparsl: healed hpc after its {kill} was SIGKILLed in {time.monotonic() - t0:.3f} s"
        )
        assert provider.pids("hpc")
        assert pid not in provider.pids("hpc")
        for n in range(5, 10):
            await fabric.publish("jobs", {"n": n})
        await wait_until(lambda: tallied(fabric, 10), timeout=60, what="10 tallies")
        tallies = await read_stream(fabric, "tallies")
        assert [t.data["n"] for t in tallies] == list(range(10))
        assert [t.data["count"] for t in tallies] == list(range(1, 11))
        run_dir = provider.run_dir
        assert run_dir is not None
        assert await anyio.Path(run_dir).is_dir()
        controller.request_stop()
    assert not await anyio.Path(run_dir).exists()


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[1])


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children...), from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry)] = _parent(int(entry))
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
