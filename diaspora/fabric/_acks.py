"""How far the durable consumers of a stream have acknowledged it.

A view releases the copies it keeps for an item once every durable consumer
of its output has acknowledged that item: the consumer's *ack floor* (the
stream sequence up to which everything is acknowledged) has reached it.

>>> import anyio
>>> from diaspora.fabric import Fabric
>>> async def demo() -> None:
...     async with Fabric() as fabric:
...         await fabric.ensure_stream("views.out")
...         print(await ack_floors(fabric, "views.out"))
>>> anyio.run(demo)
{}
"""

from __future__ import annotations

import nats.errors
import nats.js.errors

from diaspora.errors import FabricUnavailable, StreamNotFound
from diaspora.fabric._fabric import Fabric
from diaspora.fabric._naming import stream_name

__all__ = ["ack_floors"]

#: consumers the server lists per request
_PAGE = 256


async def ack_floors(fabric: Fabric, subject: str, *, domain: str | None = None) -> dict[str, int]:
    """``{durable consumer: ack floor stream sequence}`` of the stream capturing ``subject``.

    Ephemeral consumers (an ordered reader, a one-off scan) are left out:
    they come and go and hold nobody's position. Raises
    :class:`~diaspora.errors.StreamNotFound` naming the stream when it does
    not exist, :class:`~diaspora.errors.FabricUnavailable` when the server
    does not answer.
    """
    stream = stream_name(subject)
    js = fabric._connection.jetstream(domain)
    floors: dict[str, int] = {}
    seen: set[str] = set()
    try:
        while True:
            page = await js.consumers_info(stream, offset=len(seen) or None)
            for info in page:
                seen.add(info.name)
                if info.config.durable_name and info.ack_floor is not None:
                    floors[info.name] = int(info.ack_floor.stream_seq or 0)
            if len(page) < _PAGE:
                return floors
    except nats.js.errors.NotFoundError as exc:
        raise StreamNotFound(
            f"no stream {stream!r} captures {subject!r}: ensure the view's output stream first"
        ) from exc
    except (nats.errors.Error, OSError) as exc:
        raise FabricUnavailable(
            f"listing the consumers of stream {stream!r} failed: {exc!r}"
        ) from exc
