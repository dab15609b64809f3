"""Recovery from a snapshot alone: the view's state wiped, the sources' early items expired."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from diaspora.actor._checkpoint import CHECKPOINT_BUCKET, kv_key
from diaspora.events import MemorySink, ViewSnapshot
from diaspora.fabric import Fabric
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from diaspora.views import (
    SnapshotPolicy,
    Source,
    View,
    ViewItem,
    pin_bucket,
    restore_snapshot,
    snapshot_versions,
    view_at,
    view_runtime,
)
from tests.actor.test_exactly_once import stream_count

pytestmark = pytest.mark.anyio

K = 4
VIEW = View(
    "snapped",
    output="snapped.out",
    key=("tile",),
    within=60.0,
    sources={"diff": Source("snapped.diff", count=K), "recon": Source("snapped.recon")},
    snapshot=SnapshotPolicy(every=1, keep=5),
)
DIFF, RECON = VIEW.subjects
ACTOR = "view-snapped"


async def _tile(fabric: Fabric, tile: int, patterns: range = range(K), recon: bool = True) -> None:
    for i in patterns:
        await fabric.publish(DIFF, {"tile": tile, "i": i})
    if recon:
        await fabric.publish(RECON, {"tile": tile, "image": tile})


async def _run(
    fabric: Fabric, items: int, sink: MemorySink, *, snapshot: int | None = None
) -> None:
    runtime = view_runtime(VIEW, fabric, events=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)

        async def done() -> bool:
            if await stream_count(fabric, VIEW.output) < items:
                return False
            return snapshot is None or snapshot in await snapshot_versions(fabric, VIEW.name)

        await wait_until(done, timeout=30, what=f"{items} items")
        await runtime.caught_up.wait()
        runtime.request_stop()


async def _wipe(fabric: Fabric) -> None:
    """The view's checkpoint and its pins are gone; only its snapshots are left."""
    checkpoints = await fabric.ensure_kv(CHECKPOINT_BUCKET)
    await checkpoints.delete(kv_key(ACTOR))
    pins = await fabric.ensure_kv(pin_bucket(VIEW.name))
    for key in await pins.keys():
        await pins.delete(key)


async def test_a_wiped_view_recovers_from_its_snapshot_with_the_sources_expired(
    fabric: Fabric,
) -> None:
    for subject in VIEW.subjects:
        await fabric.ensure_stream(subject)
    # phase A: tiles 0-2, half of tile 4, then tile 3: snapshot at version 4 with tile 4 open
    for tile in range(3):
        await _tile(fabric, tile)
    await _tile(fabric, 4, range(K // 2), recon=False)
    await _tile(fabric, 3)
    sink = MemorySink()
    await _run(fabric, 4, sink, snapshot=4)
    at4 = await view_at(fabric, VIEW.name, 4)
    assert at4.version == 4
    assert (await VIEW.at(fabric, 4)).groups == at4.groups  # the same, from the spec
    assert at4.positions == {DIFF: 3 * K + K // 2 + K, RECON: 4}
    assert [len(refs) for refs in at4.groups.values()] == [K // 2]
    assert any(e.version == 4 for e in sink.of(ViewSnapshot))
    # phase B1: tile 4 completes (item 5, after the snapshot); then the view's state is wiped
    await _tile(fabric, 4, range(K // 2, K))
    await _run(fabric, 5, MemorySink())
    await _wipe(fabric)
    # phase B2: two more tiles, and the sources drop everything up to the snapshot's positions
    for tile in (5, 6):
        await _tile(fabric, tile)
    await fabric.ensure_stream(DIFF, max_msgs=K // 2 + 2 * K)
    await fabric.ensure_stream(RECON, max_msgs=3)
    assert (await fabric.stream_bounds(DIFF))[0] == at4.positions[DIFF] + 1
    assert (await fabric.stream_bounds(RECON))[0] == at4.positions[RECON] + 1

    restored = await restore_snapshot(fabric, VIEW.name, ACTOR, VIEW.output, version=4)
    assert restored.version == 4
    await _run(fabric, 7, MemorySink())
    stored = await read_stream(fabric, VIEW.output)
    tiles = Counter(m.data["key"][0] for m in stored)
    assert tiles == Counter(range(7))  # every tile once: none lost, tile 4 not published twice
    for msg in stored[4:]:  # the items after the snapshot load, tile 4's early refs from it
        sample = await ViewItem.of(msg).load(fabric)
        tile = msg.data["key"][0]
        got: dict[str, Any] = {s: [m.data for m in ms] for s, ms in sample.items()}
        assert got == {
            "diff": [{"tile": tile, "i": i} for i in range(K)],
            "recon": [{"tile": tile, "image": tile}],
        }
