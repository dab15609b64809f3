"""The fabric: one NATS connection, its JetStream resources, and the event channel.

With no URL a :class:`Fabric` starts (and later stops) its own embedded
``nats-server``; with a URL it connects to an existing deployment and
reconnects forever with exponential backoff, logging each state change.

>>> import anyio
>>> async def main() -> None:
...     async with Fabric() as fabric:                   # embedded server
...         await fabric.ensure_stream("edge1.patterns", max_age=3600)
...         ack = await fabric.publish("edge1.patterns", {"id": 1})
...         print(ack.stream, ack.seq)
>>> anyio.run(main)
edge1_patterns 1
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, Self

import anyio
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.client import Server as NatsServer
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    PubAck,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from diaspora import codec
from diaspora.errors import (
    ConfigError,
    DecodeError,
    FabricUnavailable,
    PayloadTooLarge,
    PublishTimeout,
    StreamNotFound,
)
from diaspora.events import Event, Reconnected, log_event
from diaspora.fabric import headers as H
from diaspora.fabric.naming import (
    DLQ_PREFIX,
    DLQ_STREAM,
    EVENTS_PREFIX,
    EVENTS_STREAM,
    check_subject,
    stream_name,
)
from diaspora.fabric.server import INLINE_PAYLOAD_LIMIT, EmbeddedServer
from diaspora.log import get_logger

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "Fabric",
    "StreamLimits",
]

#: JetStream's own default de-duplication window, seconds.
DEFAULT_DUPLICATE_WINDOW: Final = 120.0
_BLOB_BUCKET: Final = "diaspora-blobs"
_NOT_FOUND: Final = 10059  # JetStream error code: stream not found


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Retention limits of one stream; ``None`` means unlimited.

    ``duplicate_window`` (seconds) is how long JetStream remembers
    ``Nats-Msg-Id`` values; see the README for how it must relate to an
    actor's checkpoint interval.
    """

    max_msgs: int | None = None
    max_bytes: int | None = None
    max_age: float | None = None
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW
    replicas: int = 1
    storage: Literal["file", "memory"] = "file"

    def __post_init__(self) -> None:
        for field in ("max_msgs", "max_bytes", "max_age"):
            value = getattr(self, field)
            if value is not None and value <= 0:
                raise ConfigError(f"stream limits: {field}={value!r} must be positive (or None)")
        if self.duplicate_window <= 0:
            raise ConfigError(
                f"stream limits: duplicate_window={self.duplicate_window!r} must be > 0"
            )
        if self.max_age is not None and self.duplicate_window > self.max_age:
            raise ConfigError(
                f"stream limits: duplicate_window={self.duplicate_window}s exceeds "
                f"max_age={self.max_age}s; JetStream requires window <= max_age"
            )
        if self.replicas not in (1, 3, 5):
            raise ConfigError(f"stream limits: replicas={self.replicas!r}; use 1, 3 or 5")
        if self.storage not in ("file", "memory"):
            raise ConfigError(f"stream limits: storage={self.storage!r}; use 'file' or 'memory'")


def _split_urls(url: str | Sequence[str]) -> list[str]:
    urls = [u.strip() for u in url.split(",")] if isinstance(url, str) else list(url)
    urls = [u for u in urls if u]
    if not urls:
        raise ConfigError(f"fabric.url: {url!r} names no server")
    return urls


class Fabric:
    """A NATS connection with JetStream, owned for the lifetime of an ``async with``.

    ``url`` may be one URL, a comma-separated list, or a list; ``None`` (the
    default, or ``$DIASPORA_URL`` unset) starts an embedded server whose store
    lives in ``store_dir`` (a temporary directory by default).

    A lost connection is retried forever: the ``n``-th attempt waits
    ``min(backoff_max, backoff_initial * 2**n)`` seconds, times a random factor
    in [0.5, 1] (so a fleet of clients does not reconnect in lockstep). The
    1 s cap keeps a real-time workflow at most about a second behind a server
    that comes back; raise it for fleets of thousands of clients.
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
        faults: bool | None = None,
    ) -> None:
        if url is None:
            url = os.environ.get("DIASPORA_URL") or None
        self._urls = _split_urls(url) if url is not None else None
        self.name = name
        self._store_dir = store_dir
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._backoff = (backoff_initial, backoff_max)
        self._events_stream = events_stream
        self._publish_async_max_pending = publish_async_max_pending
        #: Whether actors on this fabric accept injected faults on their control
        #: subjects (tests only; default ``$DIASPORA_FAULTS == "1"``).
        self.faults = os.environ.get("DIASPORA_FAULTS") == "1" if faults is None else faults
        self.server: EmbeddedServer | None = None
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._streams: dict[str, StreamLimits] = {}
        self._kv: dict[str, KeyValue] = {}
        self._obs: dict[str, ObjectStore] = {}
        self._log = get_logger(fabric=name)
        self._connected = anyio.Event()
        self._disconnected_at: float | None = None
        #: Times the connection was re-established; subscribers that keep
        #: server-side state (pull requests) watch it to know they must renew.
        self.reconnects = 0
        self._reconnect_listeners: list[Callable[[], None]] = []

    # -- connection ----------------------------------------------------------------

    def on_reconnect(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` each time the connection is re-established (before the
        ``reconnected`` event is published); returns a function that removes it.

        For clients that keep server-side state (pull requests, ephemeral
        consumers) and must renew it at once rather than at their next check.

        >>> fabric = Fabric("nats://127.0.0.1:4222")
        >>> remove = fabric.on_reconnect(lambda: print("renew"))
        >>> remove()
        """
        self._reconnect_listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._reconnect_listeners.remove(listener)

        return remove

    @property
    def urls(self) -> list[str]:
        """The server URLs in use (the embedded server's once started)."""
        if self._urls is not None:
            return list(self._urls)
        return [self.server.url] if self.server is not None else []

    @property
    def nc(self) -> NATS:
        """The underlying nats-py client (for plain-NATS work alongside Diaspora)."""
        if self._nc is None:
            raise FabricUnavailable(
                f"fabric {self.name!r} is not connected: use `async with Fabric()`"
            )
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise FabricUnavailable(
                f"fabric {self.name!r} is not connected: use `async with Fabric()`"
            )
        return self._js

    @property
    def is_connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

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
        if self._nc is not None:
            return
        try:
            if self._urls is None:
                self.server = EmbeddedServer(
                    store_dir=self._store_dir, name=f"{self.name}-embedded"
                )
                await self.server.start()
            await self._connect_client()
            if self._events_stream:
                await self._ensure_events_stream()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()
            raise

    async def _connect_client(self) -> None:
        urls = self.urls
        nc = NATS()
        last_error: list[BaseException] = []

        async def on_error(exc: Exception) -> None:
            last_error[:] = [exc]
            self._log.debug("fabric_error", error=repr(exc))

        async def on_disconnected() -> None:
            self._connected = anyio.Event()
            self._disconnected_at = time.monotonic()
            if self._nc is not None:  # not a disconnect we asked for in close()
                self._log.warning("fabric_disconnected", urls=urls)

        async def on_reconnected() -> None:
            down = time.monotonic() - (self._disconnected_at or time.monotonic())
            url = nc.connected_url.geturl() if nc.connected_url else None
            self._log.info("fabric_reconnected", url=url, down_s=round(down, 3))
            self.reconnects += 1
            self._connected.set()
            for listener in list(self._reconnect_listeners):
                try:
                    listener()
                except Exception as exc:  # a listener's bug must not break reconnection
                    self._log.error("reconnect_listener_failed", error=repr(exc))
            await self.emit(Reconnected(name=self.name, url=url, down_s=down))

        async def on_closed() -> None:
            self._log.info("fabric_closed")

        with anyio.move_on_after(self.connect_timeout) as scope:
            await nc.connect(
                servers=urls,
                name=self.name,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                closed_cb=on_closed,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                connect_timeout=max(1, int(min(self.connect_timeout, 5))),
                reconnect_to_server_handler=self._choose_server,
                pending_size=64 * 1024 * 1024,
                flush_timeout=self.request_timeout,
            )
        if scope.cancelled_caught:
            with contextlib.suppress(Exception):
                await nc.close()
            reason = repr(last_error[0]) if last_error else "no answer"
            raise FabricUnavailable(
                f"cannot reach NATS at {','.join(urls)} within {self.connect_timeout}s "
                f"({reason}); start a server there, or omit the URL to use an embedded one"
            )
        self._nc = nc
        self._js = nc.jetstream(
            timeout=self.request_timeout,
            publish_async_max_pending=self._publish_async_max_pending,
        )
        self._connected.set()
        self._log.info(
            "fabric_connected", url=nc.connected_url.geturl() if nc.connected_url else None
        )

    def _choose_server(
        self, servers: list[NatsServer], info: dict[str, Any]
    ) -> tuple[NatsServer | None, float]:
        """Reconnect policy: least-tried server, exponential backoff with full jitter."""
        server = min(servers, key=lambda s: s.reconnects)
        initial, cap = self._backoff
        delay = min(cap, initial * 2 ** min(server.reconnects, 16)) * random.uniform(0.5, 1.0)
        self._log.info(
            "fabric_reconnecting",
            url=server.uri.geturl(),
            attempt=server.reconnects + 1,
            backoff_s=round(delay, 3),
        )
        return server, delay

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once the connection is up; raise :class:`FabricUnavailable` after ``timeout``."""
        if self.is_connected:
            return
        with anyio.move_on_after(timeout) as scope:
            await self._connected.wait()
        if scope.cancelled_caught:
            raise FabricUnavailable(
                f"fabric {self.name!r}: still disconnected from {self.urls} after {timeout}s"
            )

    async def close(self) -> None:
        """Drain the connection and stop the embedded server, if this fabric started one."""
        nc, self._nc, self._js = self._nc, None, None
        self._kv.clear()
        self._obs.clear()
        self._streams.clear()
        if nc is not None:
            with contextlib.suppress(Exception), anyio.move_on_after(5):
                await nc.drain()
            with contextlib.suppress(Exception):
                await nc.close()
        server, self.server = self.server, None
        if server is not None:
            await server.close()

    # -- JetStream resources ---------------------------------------------------------

    async def ensure_stream(
        self,
        subject: str,
        limits: StreamLimits | None = None,
        *,
        reserved_ok: bool = False,
        **fields: Any,
    ) -> StreamInfo:
        """Make sure a stream named by ``stream_name(subject)`` captures ``subject``.

        Idempotent. Limits are applied exactly, except ``duplicate_window``,
        which is never shrunk (another actor may rely on the larger window).
        Keyword ``fields`` build a :class:`StreamLimits` when ``limits`` is omitted.

        >>> async def setup(fabric: Fabric) -> None:
        ...     await fabric.ensure_stream("numbers", max_msgs=100_000, duplicate_window=300)
        """
        check_subject(subject, where="stream", reserved_ok=reserved_ok)
        if limits is None:
            limits = StreamLimits(**fields)
        elif fields:
            raise TypeError("ensure_stream: pass either limits= or keyword limits, not both")
        if self._streams.get(subject) == limits:
            try:
                return await self.js.stream_info(stream_name(subject))
            except nats.js.errors.NotFoundError:
                del self._streams[subject]  # deleted behind our back: create it again
        info = await self._apply_stream(stream_name(subject), [subject], limits)
        self._streams[subject] = limits
        return info

    async def require_stream(
        self, subject: str, *, min_duplicate_window: float | None = None
    ) -> StreamInfo:
        """Make sure a stream captures ``subject`` without changing limits someone else set.

        A missing stream is created with default limits; an existing one is
        left as it is, except that its duplicate window grows to
        ``min_duplicate_window`` seconds when smaller. A ``max_age`` below that
        window is refused with an error saying which limit to change.
        """
        check_subject(subject, where="stream")
        name = stream_name(subject)
        try:
            info = await self.js.stream_info(name)
        except nats.js.errors.NotFoundError:
            window = max(DEFAULT_DUPLICATE_WINDOW, min_duplicate_window or 0.0)
            info = await self._apply_stream(name, [subject], StreamLimits(duplicate_window=window))
            self._streams[subject] = StreamLimits(duplicate_window=window)
            return info
        config = info.config
        if sorted(config.subjects or []) != [subject]:
            raise ConfigError(
                f"stream {name!r} already captures {config.subjects}, not [{subject!r}]: "
                "two subjects map to the same stream name (dots become underscores); rename one"
            )
        current = config.duplicate_window or 0.0
        if min_duplicate_window is None or current >= min_duplicate_window:
            return info
        if config.max_age and config.max_age < min_duplicate_window:
            raise ConfigError(
                f"stream {name!r}: needs a duplicate window of {min_duplicate_window:g}s "
                f"(see the window rule in the README) but max_age is {config.max_age:g}s; "
                "raise max_age or checkpoint more often"
            )
        config.duplicate_window = min_duplicate_window
        info = await self.js.update_stream(config)
        self._log.info("stream_window_grown", stream=name, duplicate_window_s=min_duplicate_window)
        return info

    async def _apply_stream(
        self, name: str, subjects: list[str], limits: StreamLimits
    ) -> StreamInfo:
        js = self.js
        try:
            existing = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            existing = None
        config = StreamConfig(
            name=name,
            subjects=subjects,
            max_msgs=limits.max_msgs if limits.max_msgs is not None else -1,
            max_bytes=limits.max_bytes if limits.max_bytes is not None else -1,
            max_age=limits.max_age if limits.max_age is not None else 0,
            duplicate_window=limits.duplicate_window,
            num_replicas=limits.replicas,
            storage=StorageType.FILE if limits.storage == "file" else StorageType.MEMORY,
            discard=DiscardPolicy.OLD,
            allow_direct=True,
        )
        if existing is None:
            try:
                info = await js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                raise ConfigError(
                    f"stream {name!r} for {subjects}: JetStream refused it: {exc}"
                ) from exc
            self._log.info("stream_created", stream=name, subjects=subjects)
            return info
        current = existing.config
        if sorted(current.subjects or []) != sorted(subjects):
            raise ConfigError(
                f"stream {name!r} already captures {current.subjects}, not {subjects}: "
                "two subjects map to the same stream name (dots become underscores); rename one"
            )
        if (current.storage or StorageType.FILE) != config.storage:
            raise ConfigError(
                f"stream {name!r} exists with storage {current.storage}; "
                f"storage cannot change (delete the stream to recreate it)"
            )
        config.duplicate_window = max(config.duplicate_window or 0, current.duplicate_window or 0)
        if config.max_age and config.duplicate_window > config.max_age:
            config.duplicate_window = config.max_age
        same = (
            current.max_msgs == config.max_msgs
            and current.max_bytes == config.max_bytes
            and (current.max_age or 0) == config.max_age
            and current.duplicate_window == config.duplicate_window
            and (current.num_replicas or 1) == config.num_replicas
        )
        if same:
            return existing
        try:
            info = await js.update_stream(config)
        except nats.js.errors.BadRequestError as exc:
            raise ConfigError(f"stream {name!r}: JetStream refused the update: {exc}") from exc
        self._log.info("stream_updated", stream=name, subjects=subjects)
        return info

    async def _ensure_events_stream(self) -> None:
        await self._apply_stream(
            EVENTS_STREAM,
            [f"{EVENTS_PREFIX}.>"],
            StreamLimits(max_msgs=1_000_000, max_age=24 * 3600.0, duplicate_window=60.0),
        )
        # dead letters are kept until someone deals with them (no age limit)
        await self._apply_stream(
            DLQ_STREAM, [f"{DLQ_PREFIX}.>"], StreamLimits(duplicate_window=DEFAULT_DUPLICATE_WINDOW)
        )

    async def ensure_kv(
        self,
        bucket: str,
        *,
        history: int = 1,
        ttl: float | None = None,
        replicas: int = 1,
        storage: Literal["file", "memory"] = "file",
    ) -> KeyValue:
        """Open the key-value bucket ``bucket``, creating it if missing (idempotent)."""
        if bucket in self._kv:
            return self._kv[bucket]
        js = self.js
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=history,
                    ttl=ttl,
                    replicas=replicas,
                    storage=StorageType.FILE if storage == "file" else StorageType.MEMORY,
                    max_value_size=INLINE_PAYLOAD_LIMIT,
                )
            )
            self._log.info("kv_created", bucket=bucket)
        self._kv[bucket] = kv
        return kv

    async def ensure_object_store(
        self,
        bucket: str,
        *,
        ttl: float | None = None,
        replicas: int = 1,
        storage: Literal["file", "memory"] = "file",
    ) -> ObjectStore:
        """Open the object-store bucket ``bucket``, creating it if missing (idempotent)."""
        if bucket in self._obs:
            return self._obs[bucket]
        js = self.js
        try:
            obs = await js.object_store(bucket)
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
            obs = await js.create_object_store(
                bucket,
                ObjectStoreConfig(
                    bucket=bucket,
                    ttl=ttl,
                    replicas=replicas,
                    storage=StorageType.FILE if storage == "file" else StorageType.MEMORY,
                ),
            )
            self._log.info("object_store_created", bucket=bucket)
        self._obs[bucket] = obs
        return obs

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
        ``timeout`` (default: the fabric's request timeout).
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
        """Publish already-encoded bytes; payloads over 8 MiB go through the object store."""
        hdrs, payload = await self.prepare(payload, headers, msg_id)
        timeout = self.request_timeout if timeout is None else timeout
        try:
            return await self.js.publish(subject, payload, timeout=timeout, headers=hdrs)
        except nats.errors.TimeoutError as exc:
            raise PublishTimeout(
                f"publish to {subject!r} not acknowledged within {timeout}s: "
                "the server may be paused, overloaded or unreachable"
            ) from exc
        except nats.js.errors.NoStreamResponseError as exc:
            raise FabricUnavailable(
                f"no JetStream stream answered for {subject!r}: call ensure_stream({subject!r}) "
                "first, or wait for the stream's leader election to finish"
            ) from exc

    async def prepare(
        self, payload: bytes, headers: Mapping[str, str] | None, msg_id: str | None
    ) -> tuple[dict[str, str] | None, bytes]:
        """Headers and payload as they go on the wire (large payloads become blob references)."""
        hdrs = dict(headers) if headers else {}
        if msg_id is not None:
            hdrs[H.MSG_ID] = msg_id
        if len(payload) > INLINE_PAYLOAD_LIMIT:
            name = msg_id or self.nc._nuid.next().decode()
            obs = await self.ensure_object_store(_BLOB_BUCKET)
            try:
                await obs.put(name, payload)
            except Exception as exc:
                raise PayloadTooLarge(
                    f"payload of {len(payload)} bytes is over the inline limit and the "
                    f"object store {_BLOB_BUCKET!r} refused it: {exc}"
                ) from exc
            hdrs[H.BLOB] = f"{_BLOB_BUCKET}/{name}"
            hdrs[H.BLOB_SIZE] = str(len(payload))
            payload = b""
        return (hdrs or None), payload

    async def payload_of(self, msg: Msg) -> bytes:
        """The payload bytes of ``msg``, fetched from the object store if it is a blob reference."""
        ref = msg.headers.get(H.BLOB) if msg.headers else None
        if ref is None:
            return msg.data
        bucket, _, name = ref.partition("/")
        obs = await self.ensure_object_store(bucket)
        result = await obs.get(name)
        data = result.data
        if data is None:
            raise FabricUnavailable(f"blob {ref!r} of message on {msg.subject!r} has no data")
        return data

    # temporary (replaced by the sealed fabric's own): what the actor runtime needs
    async def stream_bounds(self, subject: str) -> tuple[int, int]:
        """(first_seq, last_seq) of the stream capturing ``subject``."""
        try:
            info = await self.js.stream_info(stream_name(subject))
        except nats.js.errors.NotFoundError:
            raise StreamNotFound(f"no stream captures {subject!r}") from None
        return info.state.first_seq, info.state.last_seq

    async def duplicate_window(self, subject: str) -> float | None:
        """The duplicate window (s) of the stream capturing ``subject``, None if none."""
        try:
            info = await self.js.stream_info(stream_name(subject))
        except nats.js.errors.NotFoundError:
            return None
        return info.config.duplicate_window or 0.0

    async def publish_core(
        self, subject: str, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> bool:
        """Best-effort core NATS publish; False when disconnected or refused."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.publish(subject, payload, headers=dict(headers) if headers else None)
        except (nats.errors.Error, OSError):
            return False
        return True

    async def read_blob(self, ref: str) -> bytes:
        """The bytes of an object-store payload reference ``bucket/name``."""
        bucket, _, name = ref.partition("/")
        try:
            obs = await self.ensure_object_store(bucket)
            result = await obs.get(name)
        except Exception as exc:
            raise DecodeError(f"blob {ref!r} cannot be read: {exc!r}") from exc
        if result.data is None:
            raise DecodeError(f"blob {ref!r} is empty")
        return result.data

    @contextlib.asynccontextmanager
    async def subscription(
        self, subject: str, cb: Callable[[Msg], Awaitable[None]]
    ) -> AsyncIterator[None]:
        """A core-NATS subscription with callback ``cb`` for the ``async with`` block.

        Leaving the block unsubscribes, shielded from cancellation; a connection
        that is already gone leaves nothing to undo.
        """
        sub = await self.nc.subscribe(subject, cb=cb)
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await sub.unsubscribe()
                except Exception as exc:  # connection gone: nothing left to undo
                    self._log.debug("unsubscribe_failed", subject=subject, error=repr(exc))

    # -- events ----------------------------------------------------------------------

    #: A fabric logs the events it publishes: a supervisor does not log them again.
    logs_events: Final = True

    async def emit(self, event: Event) -> None:
        """Log ``event`` at its level and publish it on its subject (an :class:`EventSink`).

        Best effort on the wire (never raises); always logged.
        """
        log_event(self._log, event)
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        try:
            await nc.publish(event.subject_name, codec.encode(event.record()))
        except Exception as exc:  # events must never break the caller
            self._log.debug("event_not_published", kind=event.kind, error=repr(exc))

