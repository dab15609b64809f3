"""A whole site lost (its nats-server killed, its link cut): the pool degrades it, its movable
actor runs at the other site, its pinned actor waits and, once the site is back (same store),
resumes where it was; every input is tallied once and in order, nothing lost."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from diaspora.compute import PoolActor, PoolController, PoolSpec, SiteQuota
from diaspora.errors import DiasporaError
from diaspora.events import Healed, MemorySink, Moved, Placed, SiteDegraded
from diaspora.fabric import Fabric, Sites, SiteSpec, link_fault
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import ActorStart
from diaspora.workflow._poolprocess import ProcessProvider
from tests.compute.pool_actors import Tally

pytestmark = pytest.mark.anyio

SPECS = (
    SiteSpec("edge", domain="edge", parent="hpc", link_proxy=True),
    SiteSpec("hpc", domain="hpc"),
)


async def outputs(fabric: Fabric, subject: str) -> list[int]:
    return [m.data["n"] for m in await read_stream(fabric, subject, missing_ok=True)]


async def test_losing_a_site_moves_movable_actors_and_pinned_ones_wait(tmp_path: Path) -> None:
    mover = PoolActor("root.mover", ActorStart(Tally, args={"out": "moved"}), "edge", movable=True)
    pinned = PoolActor(
        "root.pinned", ActorStart(Tally, args={"out": "pinned"}, inputs=("local",)), "edge"
    )
    spec = PoolSpec(
        "recon", {"edge": SiteQuota(1, 2), "hpc": SiteQuota(1, 2)}, actors=(mover, pinned)
    )
    sink = MemorySink()
    async with (
        Sites(SPECS, state_dir=tmp_path / "servers") as sites,
        sites.fabric("edge", backoff_max=0.2) as edge,
        sites.fabric("hpc") as hpc,
    ):
        for fabric in (edge, hpc):
            for subject in ("jobs", "local", "moved", "pinned"):
                await fabric.ensure_stream(subject)
        provider = ProcessProvider({"edge": edge, "hpc": hpc}, path="root", standby=False)
        controller = PoolController(spec, provider, events=sink)
        async with anyio.create_task_group() as tg:
            await tg.start(controller.run)
            with anyio.fail_after(60):
                await controller.ready.wait()
            assert {p.actor: p.site for p in sink.of(Placed)} == {
                "root.mover": "edge",
                "root.pinned": "edge",
            }
            for n in range(3):
                await edge.publish("local", {"n": n})
            await wait_until(
                lambda: _has(edge, "pinned", 3), timeout=30, what="the pinned actor's 3 tallies"
            )

            await link_fault(edge, "edge", "cut", seconds=120)  # the site is lost: cut off ...
            server = sites["edge"].server
            assert server is not None
            await server.kill()  # ... and its server down
            await wait_until(
                lambda: bool(sink.of(Moved)), timeout=30, what="the movable actor moved"
            )
            (degraded,) = sink.of(SiteDegraded)
            assert (degraded.site, degraded.reason) == ("edge", "unreachable")
            (moved,) = sink.of(Moved)
            assert (moved.actor, moved.from_site, moved.site) == ("root.mover", "edge", "hpc")
            for n in range(5):  # the moved actor works at the hpc
                await hpc.publish("jobs", {"n": n})
            await wait_until(lambda: _has(hpc, "moved", 5), timeout=30, what="5 tallies at hpc")
            assert controller.worker_of["root.pinned"] is None  # pinned: it waits
            assert controller.site_of["root.pinned"] == "edge"
            assert all(p.site == "edge" for p in sink.of(Placed) if p.actor == "root.pinned")

            await server.start()  # the site comes back, its store kept
            await wait_until(lambda: _healed(edge), timeout=30, what="the edge link healed")
            await wait_until(
                lambda: (
                    controller.worker_of["root.pinned"] is not None
                    and controller.degraded("edge") is None
                ),
                timeout=30,
                what="the pinned actor placed again at the edge",
            )
            for n in range(3, 6):
                await edge.publish("local", {"n": n})
            await wait_until(
                lambda: _has(edge, "pinned", 6), timeout=30, what="the pinned actor resumed"
            )
            await wait_until(
                lambda: any(h.site == "edge" for h in sink.of(Healed)),
                timeout=30,
                what="the edge healed",
            )
            controller.request_stop()
        assert await outputs(edge, "pinned") == list(range(6))  # each once, in order
        assert await outputs(hpc, "moved") == list(range(5))
        assert [m.data["count"] for m in await read_stream(edge, "pinned")] == list(range(1, 7))


async def _has(fabric: Fabric, subject: str, n: int) -> bool:
    return len(await outputs(fabric, subject)) >= n


async def _healed(edge: Fabric) -> bool:
    """Heal the edge's link once its link control is back with its server."""
    try:
        await link_fault(edge, "edge", "heal_link", timeout=1.0)
    except DiasporaError:
        return False
    return True
