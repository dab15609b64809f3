"""ViewItem.load: references resolved with direct gets; Stale for what the stream lost;
views over views load nested."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from diaspora import Actor, ActorRuntime, Message
from diaspora.errors import Stale
from diaspora.fabric import Fabric, StreamLimits
from diaspora.testing import wait_until
from diaspora.testing._streams import StoredMessage, read_stream
from diaspora.views import Source, View, ViewItem, view_runtime
from tests.actor.test_exactly_once import stream_count

pytestmark = pytest.mark.anyio

PAIRS = View(
    "pairs",
    output="item.pairs",
    key=("id",),
    within=600.0,
    sources={"a": Source("item.a", count=2), "b": Source("item.b")},
)


async def run_until(fabric: Fabric, runtime: ActorRuntime, subject: str, count: int) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await wait_until(_at_least(fabric, subject, count), timeout=30, what=subject)
        runtime.request_stop()


def _at_least(fabric: Fabric, subject: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await stream_count(fabric, subject) >= count

    return check


def message_of(stored: StoredMessage) -> Message:
    return Message(stored.data, stored.subject, stored.seq, stored.headers, stored.timestamp)


class Trainer(Actor):
    """A consumer taking the view as an input like any subject."""

    inputs = ("item.pairs",)

    def __init__(self) -> None:
        self.samples: list[tuple[list[int], list[int]]] = []

    async def handle(self, msg: Message) -> None:
        sample = await ViewItem.of(msg).load(self.fabric)
        a = [m.data["n"] for m in sample["a"] if isinstance(m, Message)]
        b = [m.data["n"] for m in sample["b"] if isinstance(m, Message)]
        await self.emit("item.samples", {"a": a, "b": b})


async def test_a_consumer_loads_each_item_it_takes_as_input(fabric: Fabric) -> None:
    await fabric.ensure_stream("item.a")
    await fabric.ensure_stream("item.b")
    for i in range(20):
        await fabric.publish("item.a", {"id": i % 10, "n": i})
    for i in range(10):
        await fabric.publish("item.b", {"id": 9 - i, "n": 100 + 9 - i})
    await run_until(fabric, view_runtime(PAIRS, fabric), "item.pairs", 10)
    await run_until(fabric, ActorRuntime(Trainer, fabric, id="trainer"), "item.samples", 10)
    samples = sorted((m.data["a"], m.data["b"]) for m in await read_stream(fabric, "item.samples"))
    assert samples == [([i, i + 10], [100 + i]) for i in range(10)]


async def test_a_reference_retention_dropped_raises_stale_never_another_payload(
    fabric: Fabric,
) -> None:
    view = View(
        "short",
        output="item.short",
        key=("id",),
        within=600.0,
        sources={"a": Source("item.sa"), "b": Source("item.sb")},
    )
    await fabric.ensure_stream("item.sa", StreamLimits(max_msgs=5))
    await fabric.ensure_stream("item.sb")
    for i in range(3):
        await fabric.publish("item.sa", {"id": i})
        await fabric.publish("item.sb", {"id": i})
    await run_until(fabric, view_runtime(view, fabric), "item.short", 3)
    for i in range(5):  # the stream keeps 5: items 1..3 go
        await fabric.publish("item.sa", {"id": 100 + i})
    items = [ViewItem.of(message_of(m)) for m in await read_stream(fabric, "item.short")]
    for item in items:
        with pytest.raises(Stale) as caught:
            await item.load(fabric)
        assert (caught.value.view, caught.value.version) == ("short", item.version)
        assert (caught.value.stream, caught.value.seq) == ("item_sa", item.refs["a"][0].seq)
        assert "on_stale = 'pin'" in str(caught.value)


async def test_a_view_over_a_view_loads_the_inner_items(fabric: Fabric) -> None:
    outer = View(
        "outer",
        output="item.outer",
        key=("id",),
        within=600.0,
        sources={"pairs": Source("item.pairs"), "c": Source("item.c")},
    )
    await fabric.ensure_stream("item.a")
    await fabric.ensure_stream("item.b")
    await fabric.ensure_stream("item.c")
    for i in range(4):
        await fabric.publish("item.a", {"id": i % 2, "n": i})
    for i in range(2):
        await fabric.publish("item.b", {"id": i, "n": 10 + i})
        await fabric.publish("item.c", {"id": i, "n": 20 + i})
    await run_until(fabric, view_runtime(PAIRS, fabric), "item.pairs", 2)
    await run_until(fabric, view_runtime(outer, fabric), "item.outer", 2)
    for stored in await read_stream(fabric, "item.outer"):
        item = ViewItem.of(message_of(stored))
        loaded = await item.load(fabric)
        (inner,) = loaded["pairs"]
        assert isinstance(inner, ViewItem)
        assert inner.view == "pairs"
        assert inner.key == item.key
        assert inner.loaded is not None
        (key,) = item.key
        assert [m.data["n"] for m in inner.loaded["a"]] == [key, key + 2]  # type: ignore[union-attr]
        (c,) = loaded["c"]
        assert isinstance(c, Message)
        assert c.data["n"] == 20 + key
