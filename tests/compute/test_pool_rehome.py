"""A movable actor carries its state across the loss of its site and goes home when it returns.

Real servers per site (the edge and the hpc, each its own JetStream domain, a leaf link through
a link proxy), real worker processes. The pool keeps its movable actor's checkpoint at the hpc
(``checkpoint_site``). The actor tallies inputs from the hpc (mirrored down to the edge); the
edge is lost (its link cut, its server killed) while inputs are in flight; the actor runs at the
hpc from its checkpoint, replaying what came after it; the edge comes back and the actor hands
back to it. Every input is tallied exactly once, in order, and the running count never restarts.
Both moves join a worker already running at the destination (the hpc's idle one, the edge's
new one) rather than starting one; the hpc's worker lets the actor go without stopping.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from diaspora.actor import CheckpointSlot
from diaspora.compute import PoolActor, PoolController, PoolSpec, SiteQuota
from diaspora.events import MemorySink, Moved, Placed
from diaspora.fabric import (
    Bridge,
    Fabric,
    Sites,
    SiteSpec,
    StreamLimits,
    ensure_bridge,
    link_fault,
)
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import ActorStart
from diaspora.workflow._poolprocess import ProcessProvider
from tests.compute.pool_actors import Tally
from tests.compute.test_pool_site_loss import _healed

pytestmark = pytest.mark.anyio

SPECS = (
    SiteSpec("edge", domain="edge", parent="hpc", link_proxy=True),
    SiteSpec("hpc", domain="hpc"),
)


async def tallies(fabric: Fabric) -> list[tuple[int, int]]:
    return [
        (m.data["n"], m.data["count"])
        for m in await read_stream(fabric, "tallied", missing_ok=True)
    ]


async def test_a_moved_actor_resumes_from_its_checkpoint_and_returns_home(tmp_path: Path) -> None:
    mover = PoolActor(
        "root.mover",
        ActorStart(Tally, args={"out": "tallied"}, inputs=("work",)),
        "edge",
        movable=True,
    )
    spec = PoolSpec(
        "recon",
        {"edge": SiteQuota(1, 2), "hpc": SiteQuota(1, 2)},
        actors=(mover,),
        checkpoint_site="hpc",
    )
    sink = MemorySink()
    async with (
        Sites(SPECS, state_dir=tmp_path / "servers") as sites,
        sites.fabric("edge", backoff_max=0.2) as edge,
        sites.fabric("hpc") as hpc,
    ):
        # the inputs come from the hpc, mirrored to the edge; the stream keeps the last 10 only,
        # so the actor's state cannot be rebuilt by replaying the inputs from the first
        await hpc.ensure_stream("work", StreamLimits(max_msgs=10))
        await ensure_bridge(edge, Bridge("work", "hpc", "edge", direction="down"))
        for fabric in (edge, hpc):  # the outputs: a stream at each site the actor may run at
            await fabric.ensure_stream("tallied")
        provider = ProcessProvider({"edge": edge, "hpc": hpc}, path="root", standby=False)
        controller = PoolController(spec, provider, events=sink)

        async def have(n: int) -> bool:
            return len(await tallies(hpc)) >= n

        async with anyio.create_task_group() as tg:
            await tg.start(controller.run)
            with anyio.fail_after(60):
                await controller.ready.wait()
            (hpc_worker,) = controller.live("hpc")  # idle: the hpc's minimum
            for n in range(10):
                await hpc.publish("work", {"n": n})
            await wait_until(lambda: have(10), timeout=30, what="10 tallies made at the edge")

            async def covered(n: int) -> bool:
                record = await CheckpointSlot.peek(hpc, "root.mover")
                return record is not None and record.positions.get("work", 0) >= n

            # checkpoints are written behind the outputs they follow: the 10 tallies are stored
            # before the record covering them, which must land before the next 10 inputs push
            # the first 10 out of the stream (else the move finds them gone: lost, not replayed)
            await wait_until(lambda: covered(10), timeout=30, what="the record covering the 10")
            # the record is at the hpc, none in the edge's own bucket
            assert await CheckpointSlot.peek(edge, "root.mover") is None

            for n in range(10, 20):  # in flight while the edge is lost
                await hpc.publish("work", {"n": n})
            await link_fault(edge, "edge", "cut", seconds=120)
            server = sites["edge"].server
            assert server is not None
            await server.kill()
            await wait_until(
                lambda: any(m.site == "hpc" for m in sink.of(Moved)),
                timeout=30,
                what="the movable actor moved to the hpc",
            )
            await wait_until(lambda: have(20), timeout=30, what="the 20 replayed at the hpc")
            # the tallies of 10..19 may be the edge's, sent before the cut, while the hpc
            # instance has yet to replay some of their inputs: the next 10 would push those out
            # of the stream (the runtime reports them lost). A record covering all 20 first.
            await wait_until(lambda: covered(20), timeout=30, what="the record covering 20")
            for n in range(20, 30):
                await hpc.publish("work", {"n": n})
            await wait_until(lambda: have(30), timeout=30, what="30 tallies, the last at the hpc")
            assert controller.site_of["root.mover"] == "hpc"
            assert controller.worker_of["root.mover"] == hpc_worker  # it joined the running one

            await server.start()  # the edge comes back (its store kept) ...
            await wait_until(lambda: _healed(edge), timeout=30, what="the edge link healed")
            await wait_until(
                lambda: (
                    controller.site_of["root.mover"] == "edge"
                    and controller.worker_of["root.mover"] is not None
                ),
                timeout=60,
                what="the actor placed at home again",
            )
            (edge_worker,) = controller.live("edge")
            assert controller.worker_of["root.mover"] == edge_worker  # joined the new edge one
            assert controller.live("hpc") == [hpc_worker]  # let go, not stopped
            for n in range(30, 40):
                await hpc.publish("work", {"n": n})
            await wait_until(lambda: have(40), timeout=60, what="40 tallies, the last at home")
            controller.request_stop()

        assert await tallies(hpc) == [(n, n + 1) for n in range(40)]  # once each, in order
        moves = [(m.from_site, m.site) for m in sink.of(Moved)]
        assert moves == [("edge", "hpc"), ("hpc", "edge")]
        placed = [(p.site, p.worker) for p in sink.of(Placed) if p.actor == "root.mover"]
        assert placed[1:] == [("hpc", hpc_worker), ("edge", edge_worker)]
