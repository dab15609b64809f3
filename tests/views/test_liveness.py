"""Liveness: a source's retention drops originals while the view's consumer is away.

``discard``: the consumer drops exactly the items whose references expired,
with an ``ItemStale`` each, and never gets a wrong payload. ``pin``: the view
copies references about to expire, so every item still loads; the copies are
released once the consumer has acknowledged the items.
"""

from __future__ import annotations

from typing import Any, ClassVar

import anyio
import pytest

from diaspora import Actor, ActorRuntime, Message
from diaspora.events import ItemStale, MemorySink, Pinned, Unpinned
from diaspora.fabric import Fabric, stream_name
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from diaspora.views import PinKeeper, Source, View, ViewItem, view_runtime
from tests.actor.test_exactly_once import stream_count

pytestmark = pytest.mark.anyio

TILES = 10
K = 2


class Loader(Actor):
    """Loads every view item it gets; what it loaded is kept per version."""

    loaded: ClassVar[dict[int, dict[str, list[Any]]]] = {}

    async def handle(self, msg: Message) -> None:
        sample = await ViewItem.of(msg).load(self.fabric)
        Loader.loaded[msg.seq] = {s: [m.data for m in ms] for s, ms in sample.items()}


def _view(name: str, on_stale: str) -> View:
    return View(
        name,
        output=f"{name}.out",
        key=("tile",),
        within=60.0,
        sources={"diff": Source(f"{name}.diff", count=K), "recon": Source(f"{name}.recon")},
        on_stale=on_stale,
        pin_margin=4,
    )


async def _run_away(fabric: Fabric, view: View, sink: MemorySink) -> dict[int, dict[str, Any]]:
    """The view runs while the loader is away and the sources drop their oldest messages.

    Returns the view's items by version.
    """
    diff, recon = (s.subject for s in view.sources.values())
    await fabric.ensure_stream(diff, max_msgs=4 * K)
    await fabric.ensure_stream(recon, max_msgs=4)
    await fabric.ensure_stream(view.output)
    loader = ActorRuntime(Loader, fabric, id=f"{view.name}-loader", inputs=[view.output])
    async with anyio.create_task_group() as tg:  # the loader's durable consumer exists...
        await tg.start(loader.run)
        await loader.caught_up.wait()
        loader.request_stop()
    runtime = view_runtime(view, fabric, events=sink)  # ...and it is away from here on
    keeper = None
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        keeper = next((s for s in runtime.stages if isinstance(s, PinKeeper)), None)
        for tile in range(TILES):
            for i in range(K):
                await fabric.publish(diff, {"tile": tile, "i": i})
            await fabric.publish(recon, {"tile": tile, "image": tile * 10})

            async def emitted(n: int = tile + 1) -> bool:
                return await stream_count(fabric, view.output) >= n

            await wait_until(emitted, timeout=20, what=f"item of tile {tile}")
            if keeper is not None:  # a whole sweep after the view saw this tile
                sweeps = keeper.sweeps
                await wait_until(lambda s=sweeps: keeper.sweeps >= s + 2, timeout=20)
        runtime.request_stop()
    return {m.seq: m.data for m in await read_stream(fabric, view.output)}


async def _loader_returns(fabric: Fabric, view: View, sink: MemorySink) -> None:
    Loader.loaded = {}
    loader = ActorRuntime(
        Loader, fabric, id=f"{view.name}-loader", inputs=[view.output], events=sink
    )
    async with anyio.create_task_group() as tg:
        await tg.start(loader.run)
        await loader.caught_up.wait()
        loader.request_stop()


def _expected(item: dict[str, Any]) -> dict[str, list[Any]]:
    tile = item["key"][0]
    return {
        "diff": [{"tile": tile, "i": i} for i in range(K)],
        "recon": [{"tile": tile, "image": tile * 10}],
    }


async def test_discard_drops_exactly_the_items_whose_refs_expired(fabric: Fabric) -> None:
    view = _view("gone", "discard")
    items = await _run_away(fabric, view, MemorySink())
    assert len(items) == TILES
    firsts = {stream_name(s): (await fabric.stream_bounds(s))[0] for s in view.subjects}
    expired = {
        v
        for v, item in items.items()
        if any(r[1] < firsts[r[0]] for refs in item["refs"].values() for r in refs)
    }
    assert expired, "the retention dropped no original: the test proves nothing"
    sink = MemorySink()
    await _loader_returns(fabric, view, sink)
    stale = sink.of(ItemStale)
    assert sorted(e.version for e in stale) == sorted(expired)
    assert all(e.view == "gone" and e.name == "gone-loader" for e in stale)
    assert set(Loader.loaded) == set(items) - expired
    for version, sample in Loader.loaded.items():
        assert sample == _expected(items[version])  # never a wrong payload


async def test_pin_keeps_every_item_loadable_and_releases_once_acked(fabric: Fabric) -> None:
    view = _view("kept", "pin")
    sink = MemorySink()
    items = await _run_away(fabric, view, sink)
    assert len(items) == TILES
    firsts = {stream_name(s): (await fabric.stream_bounds(s))[0] for s in view.subjects}
    expired = [
        v
        for v, item in items.items()
        if any(r[1] < firsts[r[0]] for refs in item["refs"].values() for r in refs)
    ]
    assert expired, "the retention dropped no original: the test proves nothing"
    assert sink.of(Pinned)
    assert not sink.of(ItemStale)
    # the view runs again and the loader comes back: every item loads from a stream or a pin
    sink = MemorySink()
    runtime = view_runtime(view, fabric, events=sink)
    loader_sink = MemorySink()
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        keeper = next(s for s in runtime.stages if isinstance(s, PinKeeper))
        await wait_until(lambda: keeper.sweeps >= 1, timeout=20)
        held = keeper.pins.held if keeper.pins is not None else 0
        assert held > 0
        await _loader_returns(fabric, view, loader_sink)
        # the loader acknowledged every item: the next sweeps release the copies
        await wait_until(lambda: keeper.pins is not None and keeper.pins.held == 0, timeout=20)
        runtime.request_stop()
    assert not loader_sink.of(ItemStale)
    assert set(Loader.loaded) == set(items)
    for version, sample in Loader.loaded.items():
        assert sample == _expected(items[version])
    released = sink.of(Unpinned)
    assert {e.reason for e in released} == {"acked"}
    assert sum(e.bytes for e in released) == held


async def test_a_dropped_group_releases_its_copies(fabric: Fabric) -> None:
    view = View(
        "dropping",
        output="dropping.out",
        key=("tile",),
        within=0.5,
        sources={"diff": Source("dropping.diff", count=K), "recon": Source("dropping.recon")},
        on_stale="pin",
        pin_margin=100,  # everything is about to expire: pinned at the first sweep
    )
    for subject in view.subjects:
        await fabric.ensure_stream(subject)
    await fabric.publish("dropping.diff", {"tile": 0, "i": 0})  # never complete
    sink = MemorySink()
    runtime = view_runtime(view, fabric, events=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        keeper = next(s for s in runtime.stages if isinstance(s, PinKeeper))
        await wait_until(lambda: bool(sink.of(Unpinned)), timeout=20, what="copies released")
        runtime.request_stop()
    (pinned,) = sink.of(Pinned)
    (released,) = sink.of(Unpinned)
    assert pinned.count == 1
    assert (released.reason, released.count, released.held) == ("dropped", 1, 0)
    assert keeper.pins is not None
    assert keeper.pins.held == 0
