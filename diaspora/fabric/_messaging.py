"""What a :class:`~diaspora.fabric.Fabric` publishes and asks: JetStream publishes (inline or
offloaded to the object store) and core NATS (best-effort publishes, subscriptions, requests,
inboxes).

A part of the fabric, kept apart so that the connection, streams and stores
read on their own; every method is one of :class:`~diaspora.fabric.Fabric`'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from nats.js.api import PubAck

from diaspora import codec
from diaspora.fabric._connection import Connection, Inbound, Inbox
from diaspora.fabric._stores import Carrier, Stores

__all__ = ["Messaging"]


class Messaging:
    """Publishing and core NATS, as methods of a fabric (its connection and stores)."""

    _connection: Connection
    _stores: Stores
    request_timeout: float

    # -- publishing ----------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        data: Any,
        *,
        headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
        timeout: float | None = None,
    ) -> PubAck:
        """Encode ``data`` with :mod:`diaspora.codec` and publish it to JetStream.

        Raises :class:`PublishTimeout` when no acknowledgement arrives within
        ``timeout`` (default: the fabric's request timeout),
        :class:`~diaspora.errors.PermissionDenied` when the server refuses it ``subject``.
        """
        return await self.publish_bytes(
            subject, codec.encode(data), headers=headers, msg_id=msg_id, timeout=timeout
        )

    async def publish_bytes(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
        timeout: float | None = None,
    ) -> PubAck:
        """Publish already-encoded bytes; payloads over :attr:`inline_limit` go to the
        object store. With ``msg_id``, a publish whose ack was lost to a reconnect
        (a server restart) is sent again at once: the stream keeps one copy."""
        hdrs, payload = await self.stamp_and_offload(payload, headers, msg_id)
        timeout = self.request_timeout if timeout is None else timeout
        return await self._connection.js_publish(subject, payload, hdrs, timeout)

    async def stamp_and_offload(
        self, payload: bytes, headers: Mapping[str, str] | None, msg_id: str | None
    ) -> tuple[dict[str, str] | None, bytes]:
        """Headers and payload as they go on the wire.

        ``msg_id`` is stamped as ``Nats-Msg-Id``; a payload over
        :attr:`inline_limit` is stored in the object store and replaced by a
        ``Diaspora-Blob`` reference (the payload sent is then empty).
        """
        return await self._stores.offload(payload, headers, msg_id)

    #: The former name of :meth:`stamp_and_offload`.
    prepare = stamp_and_offload

    async def payload_of(self, msg: Carrier) -> bytes:
        """The payload bytes of ``msg``, fetched from the object store if it is a blob reference.

        Raises :class:`~diaspora.errors.DecodeError` when the blob cannot be read.
        """
        return await self._stores.payload_of(msg)

    # -- core NATS -------------------------------------------------------------------

    async def publish_core(
        self, subject: str, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> bool:
        """Best-effort core-NATS publish (no JetStream, no acknowledgement).

        Returns ``False``, without raising, when disconnected or the publish
        fails: for reports whose next copy supersedes this one (positions,
        acknowledgements, events).
        """
        return await self._connection.publish_core(subject, payload, headers)

    @contextlib.asynccontextmanager
    async def subscription(
        self, subject: str, cb: Callable[[Inbound], Awaitable[None]], *, flush: bool = False
    ) -> AsyncIterator[None]:
        """A core-NATS subscription with callback ``cb`` for the ``async with`` block.

        ``cb`` receives each message as an :class:`Inbound`; answer a request
        with ``await msg.respond(data)``. With ``flush``, entering the block
        waits until the server has registered the subscription, so a request
        sent after that is seen. Leaving the block unsubscribes, shielded from
        cancellation; a connection that is already gone leaves nothing to undo.

        >>> async def serve(fabric: Messaging) -> None:
        ...     async def echo(msg: Inbound) -> None:
        ...         await msg.respond(msg.data)
        ...     async with fabric.subscription("svc.echo", echo, flush=True):
        ...         await anyio.sleep_forever()
        """
        async with self._connection.subscription(subject, cb, flush=flush):
            yield

    async def request(self, subject: str, payload: bytes, *, timeout: float) -> Inbound:
        """Send a core-NATS request and return its first answer.

        Raises :class:`~diaspora.errors.NoResponders` when nobody serves ``subject``,
        ``TimeoutError`` when nobody answers within ``timeout`` s.
        """
        return await self._connection.request(subject, payload, timeout)

    @contextlib.asynccontextmanager
    async def inbox(self) -> AsyncIterator[Inbox]:
        """A private reply subject for the ``async with`` block (several answers per request).

        >>> async def ask(fabric: Fabric) -> bytes:
        ...     async with fabric.inbox() as inbox:
        ...         await inbox.send("svc.echo", b"hi")
        ...         return (await inbox.next(timeout=1.0)).data
        """
        async with self._connection.inbox() as inbox:
            yield inbox
