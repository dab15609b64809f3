"""The copies a view keeps (pins) and the ack floors that release them, on a real server."""

from __future__ import annotations

import pytest

from diaspora.events import Unpinned
from diaspora.fabric import Fabric, ack_floors
from diaspora.views import PinnedMessage, Pins, read_pin

pytestmark = pytest.mark.anyio


def _copy(n: int) -> PinnedMessage:
    return PinnedMessage("src", {}, b"x" * n, 0.0)


async def test_budget_evicts_the_oldest_group_first(fabric: Fabric) -> None:
    budget = len(_copy(100).encode()) * 3
    pins = await Pins.open(fabric, "budgeted", budget=budget)
    for seq, owner in ((1, "old"), (2, "old"), (3, "mid")):
        assert await pins.put(owner, ("S", seq), _copy(100)) == []
    events = await pins.put("new", ("S", 4), _copy(100))
    assert [type(e) for e in events] == [Unpinned]
    assert events[0].reason == "budget"
    assert events[0].count == 2
    assert pins.owners == ["mid", "new"]
    assert await read_pin(fabric, "budgeted", "S", 1) is None
    assert (await read_pin(fabric, "budgeted", "S", 4)) == _copy(100)
    # a copy bigger than the whole budget is refused, nothing else goes
    assert await pins.put("huge", ("S", 5), _copy(budget)) == []
    assert not pins.has(("S", 5))
    assert pins.has(("S", 3))


async def test_a_shared_copy_goes_with_its_last_owner(fabric: Fabric) -> None:
    pins = await Pins.open(fabric, "shared", budget=1 << 20)
    await pins.put("a", ("S", 1), _copy(10))
    await pins.put("b", ("S", 1), _copy(10))
    assert await pins.release("a", "acked") == []
    assert pins.has(("S", 1))
    (event,) = await pins.release("b", "acked")
    assert isinstance(event, Unpinned)
    assert event.reason == "acked"
    assert event.held == 0
    assert await read_pin(fabric, "shared", "S", 1) is None


async def test_a_restart_keeps_claimed_copies_and_deletes_orphans(fabric: Fabric) -> None:
    pins = await Pins.open(fabric, "restarted", budget=1 << 20)
    await pins.put("g1", ("S", 1), _copy(10))
    await pins.put("g2", ("S", 2), _copy(10))
    again = await Pins.open(fabric, "restarted", budget=1 << 20)
    assert again.held == pins.held
    assert again.claim("g1", ("S", 1))
    assert not again.claim("g1", ("S", 9))
    (event,) = await again.release_orphans()
    assert isinstance(event, Unpinned)
    assert event.count == 1
    assert event.reason == "dropped"
    assert await read_pin(fabric, "restarted", "S", 2) is None
    assert await read_pin(fabric, "restarted", "S", 1) is not None


async def test_ack_floors_lists_durable_consumers_only(fabric: Fabric) -> None:
    await fabric.ensure_stream("views.floors")
    for i in range(5):
        await fabric.publish("views.floors", {"i": i})
    assert await ack_floors(fabric, "views.floors") == {}
    js = fabric.js
    sub = await js.pull_subscribe("views.floors", durable="reader")
    msgs = await sub.fetch(3, timeout=5)
    for msg in msgs:
        await msg.ack_sync()
    eph = await js.pull_subscribe("views.floors", durable=None)
    await eph.fetch(1, timeout=5)
    assert await ack_floors(fabric, "views.floors") == {"reader": 3}
