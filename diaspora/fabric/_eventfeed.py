"""Following the events stream: stored events first, then live ones, across reconnects.

A read-only observer (``diaspora events``, ``top``, the dashboard) reads
``DIASPORA_EVENTS`` through an ephemeral, unacknowledged consumer from a
sequence or a time, so it leaves nothing behind on the server and never
disturbs an actor's durable consumers. When the connection drops or the
server restarts (an in-memory consumer does not survive it), the consumer is
made again from the sequence after the last one read: nothing is skipped
that the stream still holds, nothing is given twice.

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
...         print([m.seq async for m in follow_events(fabric, follow=False)])
>>> anyio.run(demo)
[1, 2]
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from diaspora.errors import FabricUnavailable
from diaspora.events import EVENTS_PREFIX
from diaspora.fabric._fabric import Fabric
from diaspora.fabric._naming import EVENTS_STREAM
from diaspora.fabric._reader import StoredMsg
from diaspora.log import get_logger

__all__ = ["follow_events"]

_log = get_logger()


def _config(next_seq: int | None, since: float | None) -> ConsumerConfig:
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    if next_seq is not None:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, next_seq
    elif since is not None:
        config.deliver_policy = DeliverPolicy.BY_START_TIME
        config.opt_start_time = datetime.fromtimestamp(since, UTC)
    return config


async def follow_events(
    fabric: Fabric,
    subject: str = f"{EVENTS_PREFIX}.>",
    *,
    start_seq: int | None = None,
    since: float | None = None,
    follow: bool = True,
    batch: int = 1000,
    poll_s: float = 1.0,
) -> AsyncIterator[StoredMsg]:
    """Yield the stored events matching ``subject`` in order, then (``follow``) live ones.

    Starts at stream sequence ``start_seq``, else at the first event at or after
    Unix time ``since``, else at the oldest the stream holds. Without
    ``follow`` it ends at the last event stored when it caught up. A lost
    connection is waited out and the read resumes after the last event
    yielded; the generator itself never raises for a reconnect.
    """
    next_seq = start_seq
    while True:
        try:
            await fabric.wait_connected(timeout=None)
            js = fabric._connection.jetstream()
            reconnects = fabric.reconnects
            sub = await js.pull_subscribe(
                subject, durable=None, stream=EVENTS_STREAM, config=_config(next_seq, since)
            )
        except (nats.errors.Error, FabricUnavailable, OSError) as exc:
            if not follow and isinstance(exc, nats.js.errors.NotFoundError):
                return
            _log.debug("event_feed_retry", error=repr(exc))
            await anyio.sleep(poll_s / 4)
            continue
        try:
            async for msg in _drain(fabric, sub, batch, poll_s, follow, reconnects):
                if isinstance(msg, _Renew):
                    break
                next_seq = msg.seq + 1
                yield msg
            else:
                return
        finally:
            with contextlib.suppress(Exception), anyio.CancelScope(shield=True):
                await sub.unsubscribe()
        if not fabric.is_connected or fabric.reconnects != reconnects:
            continue
        await anyio.sleep(poll_s / 4)


class _Renew:
    """The consumer is gone or the connection changed: make a new one."""


async def _drain(
    fabric: Fabric, sub: Any, batch: int, poll_s: float, follow: bool, reconnects: int
) -> AsyncIterator[StoredMsg | _Renew]:
    while True:
        try:
            msgs = await sub.fetch(batch, timeout=poll_s)
        except (nats.errors.TimeoutError, TimeoutError):
            if not follow:
                return
            msgs = []
        except (nats.errors.Error, OSError) as exc:
            _log.debug("event_feed_renew", error=repr(exc))
            yield _Renew()
            return
        for msg in msgs:
            meta = msg.metadata
            yield StoredMsg(
                seq=meta.sequence.stream,
                subject=msg.subject,
                headers=dict(msg.headers or {}),
                payload=msg.data,
                timestamp=meta.timestamp.timestamp(),
            )
            if not follow and meta.num_pending == 0:
                return
        if not msgs and fabric.reconnects != reconnects:
            yield _Renew()
            return
