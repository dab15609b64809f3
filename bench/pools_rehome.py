"""Pools, re-homing: a movable actor's site lost, the time until it works at another site.

A server per site (the edge, the hpc: a JetStream domain each, a leaf link through a link
proxy), a pool with a worker at each, a movable actor homed at the edge whose checkpoint is at
the hpc (``checkpoint_site``), tallying inputs published at the hpc (mirrored to the edge).

- **re-home**: the edge lost (its link cut, its server SIGKILLed); measured from the kill to
  the actor's output, at the hpc, for an input published right after the kill (it runs on the
  hpc's idle worker, from its checkpoint).
- **return home**: the edge's server back and its link healed; from the heal to the output of
  an input published then, by the actor back at the edge (``placed``: the heal to the actor
  placed on a running worker at home, in the rows' extra).
- Baseline (same run): the best the pool does without a move, a restart in place: the
  actor's worker SIGKILLed at its own site (the edge up), kill → the output of an input
  published right after the kill, from the restarted worker.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from diaspora import Actor, Message
from diaspora.compute import PoolActor, PoolController, PoolSpec, SiteQuota
from diaspora.errors import DiasporaError
from diaspora.events import MemorySink
from diaspora.fabric import Bridge, Fabric, Sites, SiteSpec, ensure_bridge, link_fault
from diaspora.testing import wait_until
from diaspora.workflow import ActorStart
from diaspora.workflow._poolprocess import ProcessProvider


class Tally(Actor):
    """Counts its inputs (checkpointed every input) and emits each with the running count."""

    inputs = ("work",)
    checkpoint_every = 1

    def __init__(self) -> None:
        self.count = 0

    async def handle(self, msg: Message) -> None:
        self.count += 1
        await self.emit("tallied", {"n": msg.data["n"], "count": self.count})

    def snapshot(self) -> dict[str, int]:
        return {"count": self.count}

    def restore(self, state: dict[str, int]) -> None:
        self.count = state["count"]


class _Rig:
    def __init__(self, sites: Sites, edge: Fabric, hpc: Fabric, controller: PoolController) -> None:
        self.sites, self.edge, self.hpc, self.controller = sites, edge, hpc, controller
        self.n = 0

    async def served(self, timeout: float = 60) -> float:
        """Publish the next input at the hpc; the seconds until its output is stored."""
        n, self.n = self.n, self.n + 1
        t0 = time.perf_counter()
        await self.hpc.publish("work", {"n": n})

        async def done() -> bool:  # every output is stored once at the hpc: n + 1 of them
            return (await self.hpc.stream_bounds("tallied"))[1] >= n + 1

        await wait_until(done, timeout=timeout, interval=0.01, what=f"the output of input {n}")
        return time.perf_counter() - t0

    def worker_pid(self, provider: ProcessProvider) -> int:
        wid = self.controller.worker_of["root.mover"]
        found = [w.pid for w in provider.workers() if w.id == wid and w.pid]
        assert found, "the actor has a running worker"
        return found[0]


async def _healed(edge: Fabric) -> bool:
    try:
        await link_fault(edge, "edge", "heal_link", timeout=1.0)
    except DiasporaError:
        return False
    return True


async def rehome_rounds(rounds: int) -> dict[str, list[float]]:
    """Each round: a restart in place (baseline), a re-home, a return home (seconds)."""
    spec = PoolSpec(
        "bench",
        {"edge": SiteQuota(1, 2), "hpc": SiteQuota(1, 2)},
        actors=(PoolActor("root.mover", ActorStart(Tally), "edge", movable=True),),
        checkpoint_site="hpc",
        intensity=1000,
    )
    specs = (
        SiteSpec("edge", domain="edge", parent="hpc", link_proxy=True),
        SiteSpec("hpc", domain="hpc"),
    )
    times: dict[str, list[float]] = {"restart": [], "rehome": [], "home": [], "placed": []}
    with tempfile.TemporaryDirectory(prefix="bench-rehome-") as tmp:
        async with (
            Sites(specs, state_dir=Path(tmp)) as sites,
            sites.fabric("edge", backoff_max=0.2) as edge,
            sites.fabric("hpc") as hpc,
        ):
            await hpc.ensure_stream("work")
            await ensure_bridge(edge, Bridge("work", "hpc", "edge", direction="down"))
            for fabric in (edge, hpc):
                await fabric.ensure_stream("tallied")
            provider = ProcessProvider({"edge": edge, "hpc": hpc}, path="root", standby=False)
            controller = PoolController(spec, provider, events=MemorySink())
            rig = _Rig(sites, edge, hpc, controller)
            async with anyio.create_task_group() as tg:
                await tg.start(controller.run)
                with anyio.fail_after(60):
                    await controller.ready.wait()
                for _ in range(rounds):
                    await _round(rig, provider, times)
                controller.request_stop()
    return times


async def _round(rig: _Rig, provider: ProcessProvider, times: dict[str, list[float]]) -> None:
    controller = rig.controller
    await rig.served()  # at home, running
    t0 = time.perf_counter()
    os.kill(rig.worker_pid(provider), signal.SIGKILL)
    await rig.served()
    times["restart"].append(time.perf_counter() - t0)

    await link_fault(rig.edge, "edge", "cut", seconds=300)
    server = rig.sites["edge"].server
    assert server is not None
    t0 = time.perf_counter()
    await server.kill()
    await rig.served()
    times["rehome"].append(time.perf_counter() - t0)
    assert controller.site_of["root.mover"] == "hpc"

    await server.start()
    await wait_until(lambda: _healed(rig.edge), timeout=60, what="the edge link healed")
    t0 = time.perf_counter()

    async def home() -> bool:
        return controller.site_of["root.mover"] == "edge" and _placed(controller, provider)

    await wait_until(home, timeout=60, interval=0.01, what="the actor back home")
    times["placed"].append(time.perf_counter() - t0)  # heal -> placed at home, running
    await rig.served()
    times["home"].append(time.perf_counter() - t0)


def _placed(controller: PoolController, provider: Any) -> bool:
    wid = controller.worker_of["root.mover"]
    return any(w.id == wid and w.state.value == "running" for w in provider.workers())
