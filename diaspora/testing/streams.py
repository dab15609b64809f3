"""Reading back what a workflow wrote, for assertions in tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from diaspora import codec
from diaspora.errors import DecodeError
from diaspora.fabric import Fabric, stream_name

__all__ = ["StoredMessage", "read_stream"]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as JetStream stores it: stream sequence, headers, raw and decoded payload."""

    seq: int
    subject: str
    headers: dict[str, str]
    payload: bytes
    data: Any


async def read_stream(
    fabric: Fabric, subject: str, *, decode: bool = True, start_seq: int | None = None
) -> list[StoredMessage]:
    """Every message currently in the stream of ``subject``, in stream order.

    ``data`` is the decoded payload (``None`` when ``decode`` is false or the
    payload does not decode).

    >>> import anyio
    >>> async def demo() -> None:
    ...     async with Fabric() as fabric:
    ...         await fabric.ensure_stream("xs")
    ...         await fabric.publish("xs", {"x": 1})
    ...         print([m.data for m in await read_stream(fabric, "xs")])
    >>> anyio.run(demo)
    [{'x': 1}]
    """
    js = fabric.js
    info = await js.stream_info(stream_name(subject))
    last = info.state.last_seq
    first = max(info.state.first_seq, start_seq or 1)
    if info.state.messages == 0 or first > last:
        return []
    sub = await js.pull_subscribe(
        subject,
        durable=None,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first,
            inactive_threshold=30.0,
        ),
    )
    out: list[StoredMessage] = []
    try:
        while not out or out[-1].seq < last:
            for msg in await sub.fetch(1000, timeout=10):
                payload = await fabric.payload_of(msg)
                data: Any = None
                if decode:
                    try:
                        data = codec.decode(payload)
                    except DecodeError:
                        data = None
                out.append(
                    StoredMessage(
                        seq=msg.metadata.sequence.stream,
                        subject=msg.subject,
                        headers=dict(msg.headers or {}),
                        payload=payload,
                        data=data,
                    )
                )
    finally:
        await sub.unsubscribe()
    return out
