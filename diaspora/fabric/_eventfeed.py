"""Following the events stream: stored events first, then live ones, across reconnects.

A read-only observer (``diaspora events``, ``top``, the dashboard) reads
``DIASPORA_EVENTS`` through a pull consumer of its own (the protocol of
:mod:`diaspora.fabric._consumer`: recreated after a reconnect or a server
restart from the sequence after the last one delivered, so nothing the
stream still holds is skipped and nothing is given twice). Its name is
unique to the feed, and the server forgets it ``inactive_s`` after the
feed ends; an actor's consumers are never touched.

>>> import anyio
>>> from diaspora.events import Lag
>>> from diaspora.fabric import Fabric
>>> async def demo() -> None:
...     async with Fabric() as fabric:
...         await fabric.emit(Lag(name="sum", lag=3))
...         await fabric.emit(Lag(name="sum", lag=0))
...         with anyio.fail_after(5):  # core-NATS events reach the stream a moment later
...             while (await fabric.stream_bounds("diaspora.events.>"))[1] < 2:
...                 await anyio.sleep(0.01)
...         async with event_feed(fabric, follow=False) as feed:
...             print([m.seq async for m in feed])
>>> anyio.run(demo)
[1, 2]
"""

from __future__ import annotations

import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Final

import anyio
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from diaspora.errors import FabricUnavailable, StreamNotFound
from diaspora.events import EVENTS_PREFIX
from diaspora.fabric._consumer import ConsumerSettings, Delivery, PullConsumer
from diaspora.fabric._fabric import Fabric
from diaspora.fabric._naming import EVENTS_STREAM
from diaspora.fabric._reader import StoredMsg

__all__ = ["EventFeed", "event_feed"]

#: Deliveries held before the feed stops asking for more (its reader is behind).
_HELD: Final = 5000
_BATCH: Final = 1000


class EventFeed:
    """The events of a feed, in stream order: ``async for msg in feed`` (see :func:`event_feed`).

    ``end`` is the sequence a feed that does not follow stops after (``None``: it follows).
    """

    def __init__(self, end: int | None) -> None:
        self.end = end
        self.consumer: PullConsumer | None = None
        self._held: deque[Delivery] = deque()
        self._arrived = anyio.Event()
        self._done = end is not None and end == 0

    def deliver(self, delivery: Delivery) -> None:
        self._held.append(delivery)
        self._arrived.set()

    def credit(self) -> tuple[int, int] | None:
        return (_BATCH, 1 << 24) if len(self._held) < _HELD else None

    def __aiter__(self) -> EventFeed:
        return self

    async def __anext__(self) -> StoredMsg:
        while not self._held:
            if self._done:
                raise StopAsyncIteration
            await self._arrived.wait()
            self._arrived = anyio.Event()
        delivery = self._held.popleft()
        if self.consumer is not None and (not self._held or delivery.seq % 500 == 0):
            await self.consumer.ack(delivery)  # cumulative: every delivery before it too
            self.consumer.wake()
        if self.end is not None and delivery.seq >= self.end:
            self._done = True
            self._held.clear()
        return StoredMsg(
            seq=delivery.seq,
            subject=delivery.subject,
            headers=dict(delivery.headers or {}),
            payload=delivery.payload,
            timestamp=delivery.timestamp,
        )


@contextlib.asynccontextmanager
async def event_feed(
    fabric: Fabric,
    subject: str = f"{EVENTS_PREFIX}.>",
    *,
    start_seq: int | None = None,
    since: float | None = None,
    follow: bool = True,
    inactive_s: float = 30.0,
) -> AsyncIterator[EventFeed]:
    """The stored events matching ``subject`` in order, then (``follow``) live ones.

    Starts at stream sequence ``start_seq``, else at the first event at or after
    Unix time ``since``, else at the oldest the stream holds. Without
    ``follow`` it ends at the last matching event stored when it started. A
    lost connection is waited out; the feed never raises for a reconnect.
    """
    await fabric.wait_connected(timeout=None)
    first, last = await _bounds(fabric, subject)
    start = start_seq if start_seq is not None else first
    if start_seq is None and since is not None:
        start = await _first_since(fabric, subject, since, last)
    feed = EventFeed(end=None if follow else (last if start <= last else 0))
    if feed.end == 0:
        yield feed
        return
    feed.consumer = fabric.pull_consumer(
        subject,
        f"dsp-observe-{uuid.uuid4().hex[:12]}",
        start_seq=max(1, start),
        deliver=feed.deliver,
        credit=feed.credit,
        settings=ConsumerSettings(
            heartbeat=1.0, expires=5.0, inactive_threshold=inactive_s, max_ack_pending=_HELD
        ),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.consumer.run)
        try:
            yield feed
        finally:
            tg.cancel_scope.cancel()


async def _bounds(fabric: Fabric, subject: str) -> tuple[int, int]:
    """First and last sequence of the events matching ``subject`` (``(1, 0)``: none yet)."""
    try:
        return await fabric.stream_bounds(subject)
    except StreamNotFound:
        return 1, 0


async def _first_since(fabric: Fabric, subject: str, since: float, last: int) -> int:
    """The sequence of the first event matching ``subject`` stored at or after ``since``."""
    js = fabric._connection.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=datetime.fromtimestamp(since, UTC),
        inactive_threshold=10.0,
        mem_storage=True,
    )
    sub = await js.pull_subscribe(subject, durable=None, stream=EVENTS_STREAM, config=config)
    try:
        (msg,) = await sub.fetch(1, timeout=2.0)
        return int(msg.metadata.sequence.stream)
    except (nats.errors.TimeoutError, TimeoutError, nats.js.errors.Error, FabricUnavailable):
        return last + 1  # nothing stored since then: from the next one on
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
