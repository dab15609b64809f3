"""Reading back what a workflow wrote, for assertions in tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diaspora import codec
from diaspora.errors import DecodeError, StreamNotFound
from diaspora.fabric import Fabric
from diaspora.fabric._reader import StoredMsg, read_stored

__all__ = ["StoredMessage", "read_stream"]


@dataclass(frozen=True, slots=True)
class StoredMessage(StoredMsg):
    """A :class:`~diaspora.fabric._reader.StoredMsg` (stream sequence, subject, headers,
    raw payload, timestamp) with its payload decoded."""

    data: Any = None


async def read_stream(
    fabric: Fabric,
    subject: str,
    *,
    decode: bool = True,
    start_seq: int | None = None,
    stream: str | None = None,
    missing_ok: bool = False,
) -> list[StoredMessage]:
    """Every message currently in the stream of ``subject``, in stream order.

    ``data`` is the decoded payload (``None`` when ``decode`` is false or the
    payload does not decode). A subject with no stream yet raises
    :class:`~diaspora.errors.StreamNotFound`, or gives ``[]`` with
    ``missing_ok=True`` (to poll for a workflow's first outputs).

    >>> import anyio
    >>> async def demo() -> None:
    ...     async with Fabric() as fabric:
    ...         await fabric.ensure_stream("xs")
    ...         await fabric.publish("xs", {"x": 1})
    ...         print([m.data for m in await read_stream(fabric, "xs")])
    ...         print(await read_stream(fabric, "not.yet", missing_ok=True))
    >>> anyio.run(demo)
    [{'x': 1}]
    []
    """
    out: list[StoredMessage] = []
    try:
        async for msg in read_stored(fabric, subject, start_seq=start_seq, stream=stream):
            data: Any = None
            if decode:
                try:
                    data = codec.decode(msg.payload)
                except DecodeError:
                    data = None
            out.append(
                StoredMessage(msg.seq, msg.subject, msg.headers, msg.payload, msg.timestamp, data)
            )
    except StreamNotFound:
        if not missing_ok:
            raise
    return out
