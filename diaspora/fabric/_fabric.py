"""The fabric: one NATS connection, its JetStream resources, and the event channel.

With no URL a :class:`Fabric` starts (and later stops) its own embedded
``nats-server``; with a URL it connects to an existing deployment and
reconnects forever with exponential backoff, logging each state change.

:class:`Fabric` is the facade; each concern lives in a private module:
``_connection`` (core NATS), ``_auth`` (credentials, TLS), ``_streams``,
``_stores`` (KV, object stores, blobs), ``_consumer``, ``_jsapi`` (raw subjects).

>>> import anyio
>>> async def main() -> None:
...     async with Fabric() as fabric:                   # embedded server
...         await fabric.ensure_stream("edge1.patterns", max_age=3600)
...         ack = await fabric.publish("edge1.patterns", {"id": 1})
...         print(ack.stream, ack.seq, await fabric.stream_bounds("edge1.patterns"))
>>> anyio.run(main)
edge1_patterns 1 (1, 1)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Final, Literal, Self

import anyio
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from nats.js.object_store import ObjectStore

from diaspora import codec
from diaspora.backoff import Backoff
from diaspora.clock import Clock
from diaspora.events import Event, Reconnected, log_event
from diaspora.fabric._auth import Auth
from diaspora.fabric._connection import Connection, split_urls
from diaspora.fabric._consumer import ConsumerSettings, Credit, Delivery, PullConsumer
from diaspora.fabric._messaging import Messaging
from diaspora.fabric._objects import read_object
from diaspora.fabric._server import EmbeddedServer
from diaspora.fabric._stores import KeyValueBucket, Stores
from diaspora.fabric._streams import DEFAULT_DUPLICATE_WINDOW, StreamLimits, Streams
from diaspora.log import get_logger

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "Fabric",
    "StreamLimits",
]


class Fabric(Messaging):
    """A NATS connection with JetStream, owned for the lifetime of an ``async with``.

    ``url`` may be one URL, a comma-separated list, or a list; ``None`` (the
    default, or ``$DIASPORA_URL`` unset) starts an embedded server whose store
    lives in ``store_dir`` (a temporary directory by default); ``auth`` holds
    the credentials and TLS it connects with (:class:`~diaspora.fabric.Auth`).

    A lost connection is retried forever: the ``n``-th attempt waits
    ``min(backoff_max, backoff_initial * 2**n)`` seconds, times a random factor
    in [0.5, 1] (so a fleet of clients does not reconnect in lockstep). The
    1 s cap keeps a real-time workflow at most about a second behind a server
    that comes back; raise it for fleets of thousands of clients.

    ``domain=`` on the stream and consumer calls names another JetStream
    domain reachable from the connected server (a site of a hierarchical
    fabric); ``None`` is the connected server's own.
    """

    def __init__(
        self,
        url: str | Sequence[str] | None = None,
        *,
        name: str = "diaspora",
        store_dir: str | os.PathLike[str] | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 5.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 1.0,
        events_stream: bool = True,
        publish_async_max_pending: int = 4096,
        auth: Auth | None = None,
    ) -> None:
        if url is None:
            url = os.environ.get("DIASPORA_URL") or None
        self._urls = split_urls(url) if url is not None else None
        self.name = name
        self._store_dir = store_dir
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._events_stream = events_stream
        self.auth = auth
        self.server: EmbeddedServer | None = None
        self._log = get_logger(fabric=name)
        self._connection = Connection(
            name=name,
            connect_timeout=connect_timeout,
            request_timeout=request_timeout,
            # uniform in [0.5, 1] x min(backoff_max, backoff_initial * 2**n), as documented
            backoff=Backoff(initial=0.75 * backoff_initial, max=0.75 * backoff_max, jitter=1 / 3),
            publish_async_max_pending=publish_async_max_pending,
            log=self._log,
            on_reconnected=self._on_reconnected,
            auth=auth,
        )
        self._streams = Streams(self._connection, self._log)
        self._stores = Stores(self._connection, self._log)
        self._closers: list[Callable[[], Awaitable[None]]] = []

    # -- connection ----------------------------------------------------------------

    @property
    def reconnects(self) -> int:
        """Times the connection was re-established; subscribers that keep server-side
        state (pull requests) watch it to know they must renew."""
        return self._connection.reconnects

    def on_reconnect(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` each time the connection is re-established (before the
        ``reconnected`` event is published); returns a function that removes it.

        For clients that keep server-side state (pull requests, ephemeral
        consumers) and must renew it at once rather than at their next check.

        >>> fabric = Fabric("nats://127.0.0.1:4222")
        >>> remove = fabric.on_reconnect(lambda: print("renew"))
        >>> remove()
        """
        return self._connection.on_reconnect(listener)

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Await ``closer()`` first when the fabric closes (last registered, first called),
        for what lives as long as the connection; returns a function that removes it."""
        self._closers.append(closer)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._closers.remove(closer)

        return remove

    @property
    def urls(self) -> list[str]:
        """The server URLs in use (the embedded server's once started)."""
        if self._urls is not None:
            return list(self._urls)
        return [self.server.url] if self.server is not None else []

    @property
    def nc(self) -> NATS:
        """The underlying nats-py client, for plain-NATS work alongside Diaspora.

        Diaspora's own layers never use it; prefer the fabric's methods.
        """
        return self._connection.client

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the connected server's own domain (see :attr:`nc`)."""
        return self._connection.jetstream()

    @property
    def is_connected(self) -> bool:
        return self._connection.is_connected

    @property
    def max_payload(self) -> int:
        """The largest message the connected server accepts (its ``max_payload``), bytes."""
        return self._connection.max_payload

    @property
    def inline_limit(self) -> int:
        """The largest payload sent inline: :attr:`max_payload` less room for headers.

        Larger payloads travel through the object store (see :meth:`stamp_and_offload`).
        """
        return self._connection.inline_limit

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()

    async def connect(self) -> None:
        """Start the embedded server if needed, connect, and ensure the events stream."""
        if self._connection.nc is not None:
            return
        try:
            if self._urls is None:
                self.server = EmbeddedServer(
                    store_dir=self._store_dir, name=f"{self.name}-embedded"
                )
                await self.server.start()
            await self._connection.connect(self.urls)
            if self._events_stream:
                await self._streams.ensure_reserved()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()
            raise

    async def _on_reconnected(self, url: str | None, down: float) -> None:
        await self.emit(Reconnected(name=self.name, url=url, down_s=down))

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once the connection is up; raise :class:`FabricUnavailable` after ``timeout``."""
        await self._connection.wait_connected(timeout, self.urls)

    async def close(self) -> None:
        """Drain the connection and stop the embedded server, if this fabric started one."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            try:
                await closer()
            except Exception as exc:  # one failure must not keep the rest open
                self._log.error("close_callback_failed", error=repr(exc))
        self._stores.clear()
        self._streams.clear()
        await self._connection.close()
        server, self.server = self.server, None
        if server is not None:
            await server.close()

    # -- streams -------------------------------------------------------------------

    async def ensure_stream(
        self,
        subject: str,
        limits: StreamLimits | None = None,
        *,
        reserved_ok: bool = False,
        domain: str | None = None,
        **fields: Any,
    ) -> StreamInfo:
        """Make sure a stream named by ``stream_name(subject)`` captures ``subject``.

        Idempotent. Limits are applied exactly, except ``duplicate_window``,
        which is never shrunk (another actor may rely on the larger window).
        Keyword ``fields`` build a :class:`StreamLimits` when ``limits`` is omitted.

        >>> async def setup(fabric: Fabric) -> None:
        ...     await fabric.ensure_stream("numbers", max_msgs=100_000, duplicate_window=300)
        """
        if limits is None:
            limits = StreamLimits(**fields)
        elif fields:
            raise TypeError("ensure_stream: pass either limits= or keyword limits, not both")
        return await self._streams.ensure(subject, limits, reserved_ok=reserved_ok, domain=domain)

    async def require_stream(
        self,
        subject: str,
        *,
        min_duplicate_window: float | None = None,
        domain: str | None = None,
    ) -> StreamInfo:
        """Make sure a stream captures ``subject`` without changing limits someone else set.

        A missing stream is created with default limits; an existing one is
        left as it is, except that its duplicate window grows to
        ``min_duplicate_window`` seconds when smaller. A ``max_age`` below that
        window is refused with an error saying which limit to change.
        """
        return await self._streams.require(
            subject, min_duplicate_window=min_duplicate_window, domain=domain
        )

    async def stream_bounds(self, subject: str, *, domain: str | None = None) -> tuple[int, int]:
        """``(first_seq, last_seq)`` of the stream capturing ``subject``.

        An empty stream that never held a message answers ``(0, 0)``; one whose
        messages all aged out answers ``(last + 1, last)``. Raises
        :class:`~diaspora.errors.StreamNotFound` when no stream captures ``subject``.
        For an event input (a pattern under ``diaspora.events.``), the
        sequences of the first and last events that match it, or ``(last + 1,
        last)`` of the events stream when none does.
        """
        return await self._streams.bounds(subject, domain=domain)

    async def duplicate_window(self, subject: str, *, domain: str | None = None) -> float | None:
        """Seconds the stream capturing ``subject`` remembers message ids; ``None``: no stream."""
        with contextlib.suppress(LookupError):
            info = await self._streams.info(subject, domain=domain)
            return info.config.duplicate_window or 0.0
        return None

    async def consumer_backlog(self, subject: str, consumer: str) -> int | None:
        """Messages durable ``consumer`` of ``subject`` has not had acked (None: no answer)."""
        return await self._streams.consumer_backlog(subject, consumer)

    def pull_consumer(
        self,
        subject: str,
        name: str,
        *,
        start_seq: int,
        deliver: Callable[[Delivery], None],
        credit: Credit,
        settings: ConsumerSettings | None = None,
        clock: Clock | None = None,
        domain: str | None = None,
    ) -> PullConsumer:
        """A durable pull consumer ``name`` of ``subject``'s stream, from ``start_seq`` on.

        ``deliver`` receives each stream sequence once, in order; ``credit()``
        says how much to ask for next (see :mod:`diaspora.fabric._consumer`).
        Nothing happens on the server until its :meth:`PullConsumer.run` runs.
        """
        return PullConsumer(
            self._connection,
            subject,
            name,
            start_seq=start_seq,
            deliver=deliver,
            credit=credit,
            settings=settings if settings is not None else ConsumerSettings(),
            reconnects=lambda: self.reconnects,
            clock=clock,
            domain=domain,
        )

    # -- key-value buckets and object stores ------------------------------------------

    async def ensure_kv(
        self,
        bucket: str,
        *,
        history: int = 1,
        ttl: float | None = None,
        replicas: int = 1,
        storage: Literal["file", "memory"] = "file",
    ) -> KeyValueBucket:
        """Open (or create) key-value bucket ``bucket``; values up to :attr:`inline_limit` bytes."""
        return await self._stores.kv(
            bucket, history=history, ttl=ttl, replicas=replicas, storage=storage
        )

    async def ensure_object_store(
        self,
        bucket: str,
        *,
        ttl: float | None = None,
        replicas: int = 1,
        storage: Literal["file", "memory"] = "file",
    ) -> ObjectStore:
        """Open the object-store bucket ``bucket``, creating it if missing (idempotent)."""
        return await self._stores.object_store(bucket, ttl=ttl, replicas=replicas, storage=storage)

    async def read_blob(self, ref: str) -> bytes:
        """The payload a ``Diaspora-Blob`` header (``bucket/name``) refers to.

        Raises :class:`~diaspora.errors.DecodeError` naming ``ref`` when the
        object is missing, corrupt or empty, :class:`FabricUnavailable` when
        the server does not answer.
        """
        return await self._stores.read_blob(ref)

    async def read_object(self, bucket: str, name: str) -> bytes:
        """The bytes of object ``name`` of ``bucket``, read over its chunk subject, SHA-256 checked.

        Much faster than nats-py's ``ObjectStore.get`` for large objects.
        Raises :class:`~diaspora.errors.ObjectUnreadable` naming the object
        when it is missing, incomplete or corrupt.
        """
        return await read_object(self._connection, bucket, name)

    # -- events ----------------------------------------------------------------------

    #: A fabric logs the events it publishes: a supervisor does not log them again.
    logs_events: Final = True

    async def emit(self, event: Event) -> None:
        """Log ``event`` at its level and publish it on its subject (an :class:`EventSink`).

        Best effort on the wire (never raises); always logged.
        """
        log_event(self._log, event)
        if not await self.publish_core(event.subject_name, codec.encode(event.record())):
            self._log.debug("event_not_published", kind=event.kind)
