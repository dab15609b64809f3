"""Holes a bridge copies: the one before the first message it ever copied is reported too."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from leafrig import LeafRig, leaf_rig, publish_numbers, wait_domain

from diaspora.events import Lost, MemorySink
from diaspora.fabric import Bridge, BridgeMonitor, Fabric, GapTracker, ensure_bridge, read_stored
from diaspora.testing import wait_until

pytestmark = pytest.mark.anyio

UP = Bridge("edge.numbers", from_domain="edge", to_domain="hpc")


@pytest.fixture
async def rig() -> AsyncIterator[LeafRig]:
    async with leaf_rig() as rig:
        yield rig


async def test_a_hole_before_the_first_copied_message_is_reported(rig: LeafRig) -> None:
    sink = MemorySink()
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject, max_msgs=50)
        await ensure_bridge(hub, UP)
        rig.proxy.cut()  # before anything was copied
        await wait_domain(rig.hub.url, "edge", up=False)
        await publish_numbers(rig.edge.url, UP.subject, 0, 200)  # the edge keeps 151..200
        rig.proxy.heal()

        async def copied() -> bool:
            found = [m.seq async for m in read_stored(hub, UP.subject, headers_only=True)]
            return len(found) == 50

        await wait_until(copied, timeout=60, what="the 50 the edge kept, copied")
        monitor = BridgeMonitor(hub, UP, sink=sink)
        assert await monitor.scan() == [(1, 150)]
        assert await monitor.scan() == []
        # a monitor that starts partway cannot know what came before: it infers no hole
        assert await BridgeMonitor(hub, UP, sink=MemorySink(), start_seq=10).scan() == []
    lost = [(e.first, e.last, e.count, e.by) for e in sink.events if isinstance(e, Lost)]
    assert lost == [(1, 150, 150, "origin")]


def test_only_a_tracker_fed_from_the_copys_start_infers_a_hole_before_the_first() -> None:
    header = {"Nats-Stream-Source": "EDGE:abc 7 > > edge.numbers tok"}
    assert GapTracker(up=True).observe(1, header) == (1, 6)
    assert GapTracker(up=True, from_start=False).observe(1, header) is None
    first = {"Nats-Stream-Source": "EDGE:abc 1 > > edge.numbers tok"}
    assert GapTracker(up=True).observe(1, first) is None
