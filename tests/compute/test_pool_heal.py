"""A pool on process workers keeps each site at its minimum: every worker of a site killed
(idle, or hosting an actor under traffic) and the pool is back at its minimum, the actor
resuming from its checkpoint; a crash-looping site stops being restarted after its intensity."""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest

from diaspora.compute import PoolActor, PoolController, PoolSpec, SiteQuota
from diaspora.events import Deficit, Healed, MemorySink, Placed, SiteDegraded
from diaspora.fabric import Fabric
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import ActorStart
from diaspora.workflow._poolprocess import ProcessProvider
from tests.compute.pool_actors import CrashOnStart, Tally

pytestmark = pytest.mark.anyio


def running(provider: ProcessProvider, site: str) -> int:
    return sum(1 for w in provider.workers() if w.site == site and w.state.value == "running")


async def kill_site(provider: ProcessProvider, site: str) -> list[int]:
    pids = provider.pids(site)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "with-an-actor"])
async def test_killing_every_worker_of_a_site_heals_it_back_to_its_minimum(
    fabric: Fabric, idle: bool
) -> None:
    actors = () if idle else (PoolActor("root.tally", ActorStart(Tally), site="hpc"),)
    spec = PoolSpec(
        "recon",
        {"edge": SiteQuota(1, 2), "hpc": SiteQuota(2, 4)},
        total_min=3,
        actors=actors,
    )
    await fabric.ensure_stream("jobs")
    await fabric.ensure_stream("tallies")
    sink = MemorySink()
    provider = ProcessProvider(fabric, path="root", heartbeat_timeout=2.0, standby=False)
    controller = PoolController(spec, provider, events=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(controller.run)
        with anyio.fail_after(60):
            await controller.ready.wait()
        assert running(provider, "hpc") == 2
        assert running(provider, "edge") == 1
        if not idle:
            for n in range(5):
                await fabric.publish("jobs", {"n": n})
            await wait_until(lambda: _at_least(fabric, 5), timeout=30, what="5 tallies")
        killed = await kill_site(provider, "hpc")
        assert len(killed) == 2
        t0 = time.monotonic()
        await wait_until(lambda: bool(sink.of(Healed)), timeout=60, what="the hpc site healed")
        print(f"\nhealed hpc (2 workers SIGKILLed, idle={idle}) in {time.monotonic() - t0:.3f} s")
        (deficit,) = sink.of(Deficit)
        assert (deficit.site, deficit.want) == ("hpc", 2)
        (healed,) = sink.of(Healed)
        assert (healed.site, healed.have, healed.want) == ("hpc", 2, 2)
        assert running(provider, "hpc") == 2
        assert not set(killed) & set(provider.pids("hpc"))
        assert running(provider, "edge") == 1
        if not idle:
            assert [p.actor for p in sink.of(Placed)] == ["root.tally", "root.tally"]
            for n in range(5, 10):
                await fabric.publish("jobs", {"n": n})
            await wait_until(lambda: _at_least(fabric, 10), timeout=30, what="10 tallies")
            tallies = await read_stream(fabric, "tallies")
            assert [t.data["n"] for t in tallies] == list(range(10))  # each once, in order
            assert [t.data["count"] for t in tallies] == list(range(1, 11))  # resumed its state
        controller.request_stop()


async def tallied(fabric: Fabric) -> int:
    return len(await read_stream(fabric, "tallies", missing_ok=True))


async def _at_least(fabric: Fabric, n: int) -> bool:
    return await tallied(fabric) >= n


async def test_a_crash_looping_site_stops_being_restarted_after_its_intensity(
    fabric: Fabric,
) -> None:
    spec = PoolSpec(
        "recon",
        {"good": SiteQuota(1, 1), "bad": SiteQuota(1, 1)},
        actors=(PoolActor("root.broken", ActorStart(CrashOnStart), site="bad"),),
        intensity=2,
        period=60.0,
        retry_after=None,
    )
    sink = MemorySink()
    provider = ProcessProvider(fabric, path="root", heartbeat_timeout=2.0)
    controller = PoolController(spec, provider, events=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(controller.run)
        await wait_until(
            lambda: bool(sink.of(SiteDegraded)), timeout=90, what="the bad site degraded"
        )
        (degraded,) = sink.of(SiteDegraded)
        assert (degraded.site, degraded.reason, degraded.restarts) == ("bad", "intensity", 3)
        assert degraded.retry_after_s is None
        assert controller.degraded("bad") == "intensity"
        placed = [p for p in sink.of(Placed) if p.site == "bad"]
        assert len(placed) == 3  # the first start and two restarts: intensity = 2
        rounds = controller.rounds
        await wait_until(lambda: controller.rounds >= rounds + 20, timeout=30, what="20 rounds")
        assert len([p for p in sink.of(Placed) if p.site == "bad"]) == 3  # no more restarts
        assert provider.pids("bad") == []
        assert running(provider, "good") == 1  # the other site is not disturbed
        controller.request_stop()
