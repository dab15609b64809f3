"""A partitioned subject across a bridge: the copy at the other site says the origin's
partitions, so a plain actor there reads every item (the ``<subject>.~p.<k>`` ones too) and
each partition of a group there reads only its share; a subject partitioned after its bridge
exists tells the copy too."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import pytest

from diaspora import Actor, ActorRuntime, Message
from diaspora.errors import ConfigError
from diaspora.fabric import (
    Bridge,
    Fabric,
    Sites,
    SiteSpec,
    ensure_bridge,
    link_fault,
    partition_of,
    partition_stream,
    stream_partitions,
    wait_site,
)
from diaspora.testing import wait_until

pytestmark = pytest.mark.anyio

ITEMS, KEYS = 40, 5


class Keyed(Actor):
    """Emits ``ITEMS`` items on ``edge1.jobs``, keyed ``k0..k4`` in turn, then idles."""

    outputs = ("edge1.jobs",)

    async def produce(self) -> None:
        for n in range(ITEMS):
            await self.emit("edge1.jobs", {"n": n}, key=f"k{n % KEYS}")
        await anyio.sleep_forever()


class Seen(Actor):
    """Remembers the items it is handed."""

    inputs = ("edge1.jobs",)

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def handle(self, msg: Message) -> None:
        self.seen.append(msg.data["n"])


async def run_until(runtimes: list[ActorRuntime], done: object) -> None:
    async with anyio.create_task_group() as tg:
        for runtime in runtimes:
            await tg.start(runtime.run)
        await wait_until(done, timeout=30, what="the items handled")  # type: ignore[arg-type]
        for runtime in runtimes:
            runtime.request_stop()


def seen(runtime: ActorRuntime) -> list[int]:
    actor = runtime.actor
    assert isinstance(actor, Seen)
    return actor.seen


async def test_a_partitioned_subject_is_read_whole_or_by_share_across_a_bridge(
    tmp_path: Path,
) -> None:
    specs = (SiteSpec("edge", domain="edge", parent="hpc"), SiteSpec("hpc", domain="hpc"))
    async with (
        Sites(specs, state_dir=tmp_path) as sites,
        sites.fabric("edge") as edge,
        sites.fabric("hpc") as hpc,
    ):
        await edge.ensure_stream("edge1.jobs")
        await partition_stream(edge, "edge1.jobs", 2)
        await ensure_bridge(hpc, Bridge("edge1.jobs", "edge", "hpc"))
        assert await stream_partitions(hpc, "edge1.jobs") == 2  # the copy says so
        producer = ActorRuntime(Keyed, edge, id="keyed")
        await run_until([producer], lambda: producer.stats.emitted >= ITEMS)
        await wait_until(
            lambda: _copied(hpc, "edge1.jobs", ITEMS), timeout=30, what="the items copied"
        )

        whole = ActorRuntime(Seen, hpc, id="whole")  # a plain actor at the hpc: every item
        await run_until([whole], lambda: len(seen(whole)) >= ITEMS)
        assert seen(whole) == list(range(ITEMS))
        parts = [ActorRuntime(Seen, hpc, id=f"part{k}", partition=(k, 2)) for k in range(2)]
        share = Counter(partition_of(f"k{n % KEYS}", 2) for n in range(ITEMS))
        await run_until(parts, lambda: sum(len(seen(p)) for p in parts) >= ITEMS)
        for k, part in enumerate(parts):  # each read its own items only: reads equal the input
            assert part.stats.delivered == share[k]
            assert all(partition_of(f"k{n % KEYS}", 2) == k for n in seen(part))

        await edge.ensure_stream("edge1.late")  # bridged first, partitioned afterwards
        await ensure_bridge(hpc, Bridge("edge1.late", "edge", "hpc"))
        assert await stream_partitions(hpc, "edge1.late") is None
        await partition_stream(edge, "edge1.late", 3)
        assert await stream_partitions(hpc, "edge1.late") == 3


async def _copied(fabric: Fabric, subject: str, n: int) -> bool:
    return (await fabric.stream_bounds(subject))[1] >= n


async def test_an_aggregate_of_origins_split_differently_is_refused_naming_the_copy(
    tmp_path: Path,
) -> None:
    specs = (
        SiteSpec("edge1", domain="edge1", parent="hpc"),
        SiteSpec("edge2", domain="edge2", parent="hpc"),
        SiteSpec("hpc", domain="hpc"),
    )
    async with (
        Sites(specs, state_dir=tmp_path) as sites,
        sites.fabric("hpc") as hpc,
    ):
        for site, split in (("edge1", 2), ("edge2", 3)):
            view = sites.view(hpc, site)
            await view.ensure_stream("all.jobs")
            async with sites.fabric(site) as at:
                await partition_stream(at, "all.jobs", split)
        await ensure_bridge(hpc, Bridge("all.jobs", "edge1", "hpc"))
        with pytest.raises(ConfigError) as refused:
            await ensure_bridge(hpc, Bridge("all.jobs", "edge2", "hpc"))
        message = str(refused.value)
        assert "'all.jobs'" in message  # the bridge, by its subject and domains
        assert "edge2 -> hpc" in message
        assert "split into 2 partitions" in message
        assert "this origin splits them into 3" in message
        assert await stream_partitions(hpc, "all.jobs") == 2  # the copy is left as it was


async def test_a_copy_out_of_reach_does_not_stop_the_origins_split(tmp_path: Path) -> None:
    specs = (
        SiteSpec("edge", domain="edge", parent="hpc", link_proxy=True),
        SiteSpec("hpc", domain="hpc"),
    )
    async with (
        Sites(specs, state_dir=tmp_path) as sites,
        sites.fabric("edge", backoff_max=0.2) as edge,
        sites.fabric("hpc") as hpc,
    ):
        await edge.ensure_stream("edge1.cut")
        await ensure_bridge(hpc, Bridge("edge1.cut", "edge", "hpc"))
        await link_fault(edge, "edge", "cut", seconds=60)
        await partition_stream(edge, "edge1.cut", 2)  # the copy cannot be told: a warning
        assert await stream_partitions(edge, "edge1.cut") == 2
        assert await stream_partitions(hpc, "edge1.cut") is None
        await link_fault(edge, "edge", "heal_link")
        await wait_site(edge, "hpc")
        await partition_stream(edge, "edge1.cut", 2)  # again, the link up: told
        assert await stream_partitions(hpc, "edge1.cut") == 2
