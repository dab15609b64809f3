"""Raw nats-py doing the work with no framework: the baselines every ratio divides by."""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig


async def fresh_stream(js: JetStreamContext, name: str, subject: str) -> None:
    """(Re)create an empty file-backed stream."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(name)
    await js.add_stream(StreamConfig(name=name, subjects=[subject]))


async def publish(js: JetStreamContext, subject: str, payload: bytes, n: int, window: int) -> float:
    """Pipelined JetStream publishes (publish_async), at most ``window`` unacknowledged; seconds."""
    started = time.perf_counter()
    pending: list[asyncio.Future[object]] = []
    for _ in range(n):
        pending.append(await js.publish_async(subject, payload))  # type: ignore[arg-type]
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return time.perf_counter() - started


async def consume(js: JetStreamContext, subject: str, n: int, batch: int) -> float:
    """Pull-consume ``n`` messages in batches, one cumulative ack per batch; seconds."""
    sub = await js.pull_subscribe(
        subject,
        durable=None,
        config=ConsumerConfig(
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=batch * 4,
        ),
    )
    started = time.perf_counter()
    got = 0
    while got < n:
        msgs = await sub.fetch(min(batch, n - got), timeout=10)
        got += len(msgs)
        await msgs[-1].ack()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return elapsed


async def passthrough(
    nc: NATS, js: JetStreamContext, source: str, sink: str, n: int, batch: int
) -> float:
    """Consume ``source`` and publish each message to ``sink`` (pipelined), as a user would; s."""
    sub = await js.pull_subscribe(
        source,
        durable=None,
        config=ConsumerConfig(
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.ALL,
            max_ack_pending=batch * 4,
        ),
    )
    started = time.perf_counter()
    got = 0
    while got < n:
        msgs = await sub.fetch(min(batch, n - got), timeout=10)
        futures = [await js.publish_async(sink, m.data) for m in msgs]
        await asyncio.gather(*futures)
        got += len(msgs)
        await msgs[-1].ack()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return elapsed
