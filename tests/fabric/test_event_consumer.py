"""Event inputs at the fabric: a filter of DIASPORA_EVENTS, whose sequences have holes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest
from nats.aio.msg import Msg

from diaspora.events import Crashed, Event, Lag, events_input
from diaspora.fabric import Delivery, Fabric, PullConsumer
from diaspora.fabric._jsapi import parse_ack_subject, parse_consumer_seq
from diaspora.testing._streams import read_stream
from diaspora.testing._waiting import wait_until

pytestmark = pytest.mark.anyio

LAGS = events_input(Lag, name="src")


def test_consumer_sequences_parse_in_both_forms() -> None:
    assert parse_consumer_seq("$JS.ACK.xs.dsp-a.1.42.40.1700000000000000000.7") == 40
    assert parse_consumer_seq("$JS.ACK.edge.HASH.xs.dsp-a.1.42.40.1700000000500000000.7.t") == 40


async def emit_stored(fabric: Fabric, events: list[Event]) -> list[int]:
    """Emit ``events`` (core NATS, as the runtime does); the stream sequences of the Lags."""
    _, before = await fabric.stream_bounds("diaspora.events.>")
    for event in events:
        await fabric.emit(event)

    async def stored() -> bool:
        return (await fabric.stream_bounds("diaspora.events.>"))[1] >= before + len(events)

    await wait_until(stored, timeout=10, what="events stored in DIASPORA_EVENTS")
    kept = await read_stream(fabric, LAGS, start_seq=before + 1)
    return [m.seq for m in kept if m.subject == "diaspora.events.actor.src.lag"]


def interleaved(n: int) -> list[Event]:
    """``n`` Lag events of ``src``, each followed by two events the filter does not match."""
    out: list[Event] = []
    for i in range(n):
        out += [
            Lag(name="src", lag=i),
            Crashed(name="src", reason="noise"),
            Lag(name="other", lag=i),
        ]
    return out


class _Reader:
    def __init__(self) -> None:
        self.got: list[Delivery] = []
        self.consumer: PullConsumer | None = None

    def deliver(self, delivery: Delivery) -> None:
        self.got.append(delivery)

    def credit(self) -> tuple[int, int] | None:
        assert self.consumer is not None
        return None if self.consumer.outstanding else (4, 1 << 20)


def _consumer(fabric: Fabric, reader: _Reader) -> PullConsumer:
    consumer = fabric.pull_consumer(
        LAGS, "dsp-ev-test", start_seq=1, deliver=reader.deliver, credit=reader.credit
    )
    reader.consumer = consumer
    return consumer


async def test_reading_an_event_filter_with_no_match_or_from_past_its_last_returns_at_once(
    fabric: Fabric,
) -> None:
    """A filter of the events stream that matches nothing (the demo's monitor tail before any
    alert) read nothing, after its fetch waited its whole 10 s timeout, on every look."""
    seqs = await emit_stored(fabric, interleaved(3))
    with anyio.fail_after(5):  # well under the fetch's 10 s
        assert await read_stream(fabric, events_input(Lag, name="nobody")) == []
        assert await read_stream(fabric, LAGS, start_seq=seqs[-1] + 1) == []
        # and a read starting before the first match begins there
        assert [m.seq for m in await read_stream(fabric, LAGS, start_seq=1)] == seqs


async def test_stream_bounds_of_an_event_filter_are_its_first_and_last_match(
    fabric: Fabric,
) -> None:
    seqs = await emit_stored(fabric, interleaved(3))
    assert await fabric.stream_bounds(LAGS) == (seqs[0], seqs[-1])
    _, last = await fabric.stream_bounds("diaspora.events.>")
    assert last > seqs[-1]
    nobody = events_input(Lag, name="nobody")
    assert await fabric.stream_bounds(nobody) == (last + 1, last)


async def test_an_event_filter_takes_the_holes_between_its_events_for_no_gap(
    fabric: Fabric,
) -> None:
    seqs = await emit_stored(fabric, interleaved(10))
    reader = _Reader()
    consumer = _consumer(fabric, reader)
    assert consumer.stream == "DIASPORA_EVENTS"
    assert consumer.sparse
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: len(reader.got) == 10, timeout=10, what="10 deliveries")
        tg.cancel_scope.cancel()
    assert [d.seq for d in reader.got] == seqs
    assert {d.subject for d in reader.got} == {LAGS}
    assert [d.gap_from for d in reader.got] == [None] * 10
    assert consumer.resets == 0  # no skip re-checked: holes are other events


async def test_an_event_lost_in_transit_is_delivered_again(fabric: Fabric) -> None:
    seqs = await emit_stored(fabric, interleaved(6))
    reader = _Reader()
    consumer = _consumer(fabric, reader)
    on_msg: Callable[[Msg], Awaitable[None]] = consumer._on_msg
    dropped: list[int] = []

    async def lose_one(msg: Msg) -> None:
        # the third event vanishes once between server and consumer (a broken connection)
        if msg.reply and not dropped and parse_ack_subject(msg.reply)[0] == seqs[2]:
            dropped.append(seqs[2])
            return
        await on_msg(msg)

    consumer._on_msg = lose_one  # type: ignore[method-assign]
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: len(reader.got) == 6, timeout=10, what="6 deliveries")
        tg.cancel_scope.cancel()
    assert dropped == [seqs[2]]
    assert [d.seq for d in reader.got] == seqs
    assert consumer.resets == 1  # the skipped consumer sequence recreated it once
