"""Reading a stream's stored messages in order, from a sequence, without disturbing consumers.

Used to scan outputs after a long outage, to replay from JetStream, and by
tests to read back what a workflow wrote.

>>> import anyio
>>> from diaspora.fabric import Fabric
>>> async def demo() -> None:
...     async with Fabric() as fabric:
...         await fabric.ensure_stream("xs")
...         for i in range(3):
...             await fabric.publish("xs", {"i": i})
...         print([m.seq async for m in read_stored(fabric, "xs", start_seq=2)])
>>> anyio.run(demo)
[2, 3]
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from diaspora.fabric._fabric import Fabric
from diaspora.fabric._naming import is_event_input, partition_base

__all__ = ["StoredMsg", "read_stored"]


@dataclass(frozen=True, slots=True)
class StoredMsg:
    """One stored message: stream sequence, subject, headers and raw payload."""

    seq: int
    subject: str
    headers: dict[str, str]
    payload: bytes
    timestamp: float


async def read_stored(
    fabric: Fabric,
    subject: str,
    *,
    start_seq: int | None = None,
    end_seq: int | None = None,
    headers_only: bool = False,
    batch: int = 1000,
    resolve_blobs: bool = True,
    stream: str | None = None,
    domain: str | None = None,
) -> AsyncIterator[StoredMsg]:
    """Yield the messages of ``subject``'s stream from ``start_seq`` to ``end_seq`` (inclusive).

    ``end_seq`` defaults to the stream's last sequence when the read starts.
    ``headers_only`` skips payloads (a cheap scan of ids and keys). Large
    payloads stored in the object store are fetched unless ``resolve_blobs``
    is false. ``stream`` names the stream when it is not the subject's own
    (``DIASPORA_DLQ`` for ``diaspora.dlq.<actor>``). A subject without a stream
    raises :class:`~diaspora.errors.StreamNotFound`. An event input (a pattern
    under ``diaspora.events.``) reads the events that match it. ``domain`` names the
    JetStream domain holding the stream (``None``: the connected server's).
    """
    info = await fabric._streams.info(subject, domain=domain, stream=stream)
    js = fabric._connection.jetstream(domain)
    last = info.state.last_seq if end_seq is None else min(end_seq, info.state.last_seq)
    first = max(info.state.first_seq, start_seq or 1)
    if (is_event_input(subject) or partition_base(subject)) and info.state.messages:
        # a filter of a shared stream: its first and last matches bound the read. With none,
        # nothing is read: a fetch that finds no match at all waits out its whole timeout
        lo, hi = await fabric._streams.bounds(subject, domain=domain)
        if lo > hi:
            return
        first, last = max(first, lo), min(last, hi)
    if info.state.messages == 0 or first > last:
        return
    sub = await js.pull_subscribe(
        subject,
        durable=None,
        stream=info.config.name,  # a bridge's copy has no subjects to find it by
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first,
            headers_only=headers_only,
            inactive_threshold=30.0,
            mem_storage=True,
        ),
    )
    try:
        seq = first - 1
        while seq < last:
            for msg in await sub.fetch(min(batch, last - seq), timeout=10):
                meta = msg.metadata
                seq = meta.sequence.stream
                if seq > last:
                    return
                payload = msg.data
                if resolve_blobs and not headers_only:
                    payload = await fabric.payload_of(msg)
                yield StoredMsg(
                    seq=seq,
                    subject=msg.subject,
                    headers=dict(msg.headers or {}),
                    payload=payload,
                    timestamp=meta.timestamp.timestamp(),
                )
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
