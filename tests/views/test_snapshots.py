"""View snapshots: written with copies of what open groups refer to, read back, pruned, restored."""

from __future__ import annotations

import pytest

from diaspora import codec
from diaspora.actor._checkpoint import CheckpointSlot
from diaspora.errors import ViewError
from diaspora.fabric import Fabric
from diaspora.views import read_pin
from diaspora.views._snapshots import (
    Capture,
    restore_snapshot,
    snapshot_versions,
    view_at,
    write_snapshot,
)

pytestmark = pytest.mark.anyio


async def _source(fabric: Fabric, n: int, max_msgs: int) -> None:
    await fabric.ensure_stream("snap.src", max_msgs=max_msgs)
    for i in range(n):
        await fabric.publish("snap.src", {"i": i})


async def test_a_snapshot_outlives_the_source_messages_it_refers_to(fabric: Fabric) -> None:
    await _source(fabric, 4, max_msgs=4)
    capture = Capture(
        sections={"view": (1, {"open": ["g1"]})},
        groups=[("g1", [("snap_src", 1), ("snap_src", 2)])],
    )
    event = await write_snapshot(fabric, "snapv", 7, {"snap.src": 2}, capture, keep=3)
    assert (event.version, event.groups, event.payloads) == (7, 1, 2)
    for i in range(4, 8):  # the source drops seqs 1..4
        await fabric.publish("snap.src", {"i": i})
    assert (await fabric.stream_bounds("snap.src"))[0] == 5
    state = await view_at(fabric, "snapv", 9)
    assert state.version == 7
    assert state.positions == {"snap.src": 2}
    assert state.groups == {"g1": [("snap_src", 1), ("snap_src", 2)]}
    assert codec.decode(state.payload("snap_src", 2).data) == {"i": 1}
    with pytest.raises(ViewError, match="no snapshot at or before version 6"):
        await view_at(fabric, "snapv", 6)


async def test_old_snapshots_are_pruned_to_keep(fabric: Fabric) -> None:
    await _source(fabric, 1, max_msgs=10)
    capture = Capture(sections={}, groups=[("g", [("snap_src", 1)])])
    for version in (1, 2, 3, 4):
        event = await write_snapshot(fabric, "pruned", version, {}, capture, keep=2)
    assert event.pruned == 1
    assert await snapshot_versions(fabric, "pruned") == [3, 4]


async def test_a_ref_in_neither_stream_nor_pins_refuses_the_snapshot(fabric: Fabric) -> None:
    await _source(fabric, 3, max_msgs=1)
    capture = Capture(sections={}, groups=[("g", [("snap_src", 1)])])
    with pytest.raises(ViewError, match="snap_src seq 1 of an open group"):
        await write_snapshot(fabric, "gone", 1, {}, capture, keep=2)


async def test_restore_writes_the_checkpoint_and_the_pins(fabric: Fabric) -> None:
    await _source(fabric, 2, max_msgs=2)
    capture = Capture(sections={"view": (3, {"open": 1})}, groups=[("g", [("snap_src", 2)])])
    await write_snapshot(fabric, "restored", 5, {"snap.src": 2}, capture, keep=2)
    for i in range(2, 6):
        await fabric.publish("snap.src", {"i": i})
    await restore_snapshot(fabric, "restored", "root.restored", "views.restored")
    slot = await CheckpointSlot.claim(fabric, "root.restored")
    assert slot.current is not None
    assert slot.current.positions == {"snap.src": 2}
    assert slot.current.section("view") == {"open": 1}
    assert slot.current.section("outputs") == {"items": {}, "out_seqs": {"views.restored": 5}}
    pin = await read_pin(fabric, "restored", "snap_src", 2)
    assert pin is not None
    assert codec.decode(pin.data) == {"i": 1}
