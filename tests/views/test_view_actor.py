"""The view actor against a real server: groups published once, as items of references."""

from __future__ import annotations

import time

import anyio
import pytest

from diaspora.events import GroupCompleted, GroupDropped, GroupOpened, MemorySink
from diaspora.fabric import Fabric
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from diaspora.views import OnIncomplete, Source, View, view_runtime
from tests.actor.test_exactly_once import stream_count
from tests.views.ptycho import TILES, arrival_order, check_items, ptycho_view, publish_tiles

pytestmark = pytest.mark.anyio


async def test_500_tiles_out_of_order_make_500_items_of_17_references(fabric: Fabric) -> None:
    view = ptycho_view()
    for subject in view.subjects:
        await fabric.ensure_stream(subject)
    order = arrival_order(TILES)
    seqs = await publish_tiles(fabric, order)
    sink = MemorySink()
    runtime = view_runtime(view, fabric, events=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await runtime.caught_up.wait()
        runtime.request_stop()
    await check_items(fabric, view, seqs, TILES)
    completed = sum(e.completed for e in sink.events if isinstance(e, GroupCompleted))
    assert completed == TILES
    assert sum(e.opened for e in sink.events if isinstance(e, GroupOpened)) == TILES
    assert len([e for e in sink.events if isinstance(e, GroupCompleted)]) < TILES  # per batch


async def test_a_restart_mid_way_emits_each_group_once(fabric: Fabric) -> None:
    view = ptycho_view("restarted")
    for subject in view.subjects:
        await fabric.ensure_stream(subject)
    order = arrival_order(200, seed=5)
    seqs = await publish_tiles(fabric, order, stop=3000)
    runtime = view_runtime(view, fabric)
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await runtime.caught_up.wait()
        runtime.request_stop()
    first = await stream_count(fabric, view.output)
    assert 0 < first < 200
    seqs |= await publish_tiles(fabric, order, start=3000)
    runtime = view_runtime(view, fabric)
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await runtime.caught_up.wait()
        runtime.request_stop()
    await check_items(fabric, view, seqs, 200)


async def test_expired_groups_are_dropped_or_emitted_partial_as_declared(fabric: Fabric) -> None:
    sources = {"a": Source("exp.a", count=3), "b": Source("exp.b")}
    drop = View("dropper", output="exp.dropped", key=("k",), within=0.5, sources=sources)
    partial = View(
        "partial",
        output="exp.partial",
        key=("k",),
        within=0.5,
        sources=sources,
        on_incomplete=OnIncomplete.EMIT_PARTIAL,
        min_counts={"a": 2, "b": 1},
    )
    for subject in ("exp.a", "exp.b"):
        await fabric.ensure_stream(subject)
    await fabric.publish("exp.a", {"k": "x"})
    await fabric.publish("exp.a", {"k": "x"})
    await fabric.publish("exp.b", {"k": "x"})
    await fabric.publish("exp.a", {"k": "y"})
    sink = MemorySink()
    runtimes = [view_runtime(v, fabric, events=sink) for v in (drop, partial)]
    async with anyio.create_task_group() as tg:
        for runtime in runtimes:
            await tg.start(runtime.run)

        def dropped() -> int:
            return sum(isinstance(e, GroupDropped) for e in sink.events)

        await wait_until(lambda: dropped() >= 3, timeout=20, what="expired groups")
        for runtime in runtimes:
            runtime.request_stop()
    assert await read_stream(fabric, "exp.dropped", missing_ok=True) == []
    (item,) = await read_stream(fabric, "exp.partial")
    assert item.data["key"] == ["x"]
    assert item.data["complete"] is False
    assert [len(item.data["refs"][s]) for s in ("a", "b")] == [2, 1]
    reasons = sorted((e.name, e.key, e.reason) for e in sink.events if isinstance(e, GroupDropped))
    assert reasons == [
        ("view-dropper", '["x"]', "incomplete after within=0.5s"),
        ("view-dropper", '["y"]', "incomplete after within=0.5s"),
        ("view-partial", '["y"]', "below min_counts"),
    ]


async def test_a_group_is_not_timed_out_while_a_source_still_has_a_backlog(
    fabric: Fabric,
) -> None:
    """A's time runs ahead of B's backlog: the group waits for B's item instead of expiring."""
    await fabric.ensure_stream("lag.a")
    await fabric.ensure_stream("lag.b")
    await fabric.publish("lag.a", {"k": "x"})
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for i in range(1200):  # B's backlog, past the first batch: other keys first
            tg.start_soon(fabric.publish, "lag.b", {"k": f"filler{i // 64}", "i": i})
    await fabric.publish("lag.b", {"k": "x"})
    # B's own stored time must stay within x's window: the window is sized from how long
    # publishing B's backlog took (a busy machine takes longer), not the other way round
    within = max(3.0, 2 * (time.monotonic() - started))
    view = View(
        "patient",
        output="lag.out",
        key=("k",),
        within=within,
        sources={"a": Source("lag.a"), "b": Source("lag.b")},
    )
    await anyio.sleep(within + 0.2)
    await fabric.publish("lag.a", {"k": "y"})  # A's stored time moves past the window
    sink = MemorySink()
    runtime = view_runtime(view, fabric, events=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await runtime.caught_up.wait()
        runtime.request_stop()
    items = await read_stream(fabric, "lag.out", missing_ok=True)
    assert [m.data["key"] for m in items] == [["x"]]
    assert '["x"]' not in {e.key for e in sink.events if isinstance(e, GroupDropped)}
