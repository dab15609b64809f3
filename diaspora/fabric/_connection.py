"""The fabric's NATS connection: connect, reconnect forever, and core NATS messaging.

One nats-py client per :class:`~diaspora.fabric.Fabric`, with a reconnect
policy (least-tried server, :class:`~diaspora.backoff.Backoff` between
attempts), listeners that must renew server-side state at once after a
reconnect, one JetStream context per domain, and the core-NATS operations the
layers above need (best-effort publish, subscriptions, request/reply) in
terms of :class:`Inbound` values, never nats-py messages.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.client import Server as NatsServer
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck

from diaspora.backoff import Backoff
from diaspora.errors import (
    ConfigError,
    DiasporaError,
    FabricUnavailable,
    NoResponders,
    PublishTimeout,
    StreamFull,
)
from diaspora.fabric import _jsapi
from diaspora.fabric._auth import Auth, refusal
from diaspora.fabric._inbound import Inbound, Inbox
from diaspora.fabric._permissions import (
    Violations,
    parse_violation,
    refuses_publish,
    refuses_subscription,
)
from diaspora.fabric.headers import MSG_ID

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = ["Connection", "Inbound", "Inbox", "split_urls"]

#: Bytes of a message kept for headers when sizing what may travel inline.
_HEADER_ROOM: Final = 64 * 1024


def split_urls(url: str | Sequence[str]) -> list[str]:
    urls = [u.strip() for u in url.split(",")] if isinstance(url, str) else list(url)
    urls = [u for u in urls if u]
    if not urls:
        raise ConfigError(f"fabric.url: {url!r} names no server")
    return urls


class Connection:
    """One nats-py client, reconnecting forever; see :class:`~diaspora.fabric.Fabric`."""

    def __init__(
        self,
        *,
        name: str,
        connect_timeout: float,
        request_timeout: float,
        backoff: Backoff,
        publish_async_max_pending: int,
        log: FilteringBoundLogger,
        on_reconnected: Callable[[str | None, float], Awaitable[None]],
        auth: Auth | None = None,
    ) -> None:
        self.name = name
        self.auth = auth
        #: Publishes and subscriptions the server refused (reported asynchronously).
        self.violations = Violations()
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.backoff = backoff
        self._publish_async_max_pending = publish_async_max_pending
        self._log = log
        self._on_reconnected = on_reconnected
        self.nc: NATS | None = None
        self._js: dict[str | None, JetStreamContext] = {}
        self._connected = anyio.Event()
        self._disconnected_at: float | None = None
        self._rng = random.Random()
        self.reconnects = 0
        self._listeners: list[Callable[[], None]] = []

    # -- state -----------------------------------------------------------------------

    @property
    def client(self) -> NATS:
        """The nats-py client; raises :class:`FabricUnavailable` when not connected."""
        if self.nc is None:
            raise FabricUnavailable(
                f"fabric {self.name!r} is not connected: use `async with Fabric()`"
            )
        return self.nc

    def jetstream(self, domain: str | None = None) -> JetStreamContext:
        """The JetStream context of ``domain`` (``None``: the connected server's own)."""
        js = self._js.get(domain)
        if js is None:
            js = self._js[domain] = self.client.jetstream(
                domain=domain,
                timeout=self.request_timeout,
                publish_async_max_pending=self._publish_async_max_pending,
            )
        return js

    @property
    def is_connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    @property
    def max_payload(self) -> int:
        """The largest message (headers + payload) the connected server accepts, bytes."""
        return self.client.max_payload

    @property
    def inline_limit(self) -> int:
        """The largest payload sent inline; larger ones go through the object store."""
        max_payload = self.max_payload
        return max_payload - min(_HEADER_ROOM, max_payload // 2)

    def on_reconnect(self, listener: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(listener)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self, urls: list[str]) -> None:
        nc = NATS()
        last_error: list[BaseException] = []
        refused: list[DiasporaError] = []
        options = self.auth.connect_options() if self.auth is not None else {}

        async def on_error(exc: Exception) -> None:
            violation = parse_violation(exc)
            if violation is not None:
                self._log.warning(
                    "permission_denied", subject=violation.subject, operation=violation.operation
                )
                self.violations.report(violation)
                return
            last_error[:] = [exc]
            self._log.debug("fabric_error", error=repr(exc))
            error = refusal(exc, urls, self.auth)
            if error is not None and self.nc is None:
                refused[:] = [error]  # the first connect: retrying will not help
                scope.cancel()
            elif error is not None:  # a reconnect refused (credentials rotated?): keeps trying
                self._log.error("fabric_refused", reason=str(error))

        async def on_disconnected() -> None:
            self._connected = anyio.Event()
            self._disconnected_at = time.monotonic()
            if self.nc is not None:  # not a disconnect we asked for in close()
                self._log.warning("fabric_disconnected", urls=urls)

        async def on_reconnected() -> None:
            down = time.monotonic() - (self._disconnected_at or time.monotonic())
            url = nc.connected_url.geturl() if nc.connected_url else None
            self._log.info("fabric_reconnected", url=url, down_s=round(down, 3))
            self.reconnects += 1
            self._connected.set()
            for listener in list(self._listeners):
                try:
                    listener()
                except Exception as exc:  # a listener's bug must not break reconnection
                    self._log.error("reconnect_listener_failed", error=repr(exc))
            await self._on_reconnected(url, down)

        async def on_closed() -> None:
            self._log.info("fabric_closed")

        with anyio.move_on_after(self.connect_timeout) as scope:
            await nc.connect(
                **options,
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
            if refused:
                raise refused[0]
            reason = repr(last_error[0]) if last_error else "no answer"
            raise FabricUnavailable(
                f"cannot reach NATS at {','.join(urls)} within {self.connect_timeout}s "
                f"({reason}); start a server there, or omit the URL to use an embedded one"
            )
        self.nc = nc
        self._js.clear()
        self._connected.set()
        self._log.info(
            "fabric_connected",
            url=nc.connected_url.geturl() if nc.connected_url else None,
            max_payload=nc.max_payload,
        )

    def _choose_server(
        self, servers: list[NatsServer], info: dict[str, Any]
    ) -> tuple[NatsServer | None, float]:
        """Reconnect policy: least-tried server, backoff with jitter."""
        server = min(servers, key=lambda s: s.reconnects)
        delay = self.backoff.delay(server.reconnects + 1, self._rng)
        self._log.info(
            "fabric_reconnecting",
            url=server.uri.geturl(),
            attempt=server.reconnects + 1,
            backoff_s=round(delay, 3),
        )
        return server, delay

    async def wait_connected(self, timeout: float | None, urls: list[str]) -> None:
        if self.is_connected:
            return
        with anyio.move_on_after(timeout) as scope:
            await self._connected.wait()
        if scope.cancelled_caught:
            raise FabricUnavailable(
                f"fabric {self.name!r}: still disconnected from {urls} after {timeout}s"
            )

    async def close(self) -> None:
        nc, self.nc = self.nc, None
        self._js.clear()
        if nc is not None:
            with contextlib.suppress(Exception), anyio.move_on_after(5):
                await nc.drain()
            with contextlib.suppress(Exception):
                await nc.close()

    # -- core NATS -------------------------------------------------------------------

    async def publish_core(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        reply: str = "",
    ) -> bool:
        nc = self.nc
        if nc is None or not nc.is_connected:
            return False
        try:
            await nc.publish(
                subject, payload, reply=reply, headers=dict(headers) if headers else None
            )
        except (nats.errors.Error, OSError) as exc:
            self._log.debug("core_publish_failed", subject=subject, error=repr(exc))
            return False
        return True

    @contextlib.asynccontextmanager
    async def subscription(
        self, subject: str, cb: Callable[[Inbound], Awaitable[None]], *, flush: bool
    ) -> AsyncIterator[None]:
        async def on_msg(msg: Msg) -> None:
            await cb(Inbound._of(msg, self))

        nc = self.client
        with self.violations.watch(refuses_subscription(subject)) as watch:
            sub = await nc.subscribe(subject, cb=on_msg)
            if flush:  # the server answers the flush after it refused the subscription
                try:
                    await self._flush(nc, subject)
                    # nats-py hands the refusal to the error callback in a task of its own,
                    # which may not have run when the flush returns: a second round trip
                    # gives it the time
                    await self._flush(nc, subject)
                except BaseException:
                    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                        await sub.unsubscribe()
                    raise
        if watch.seen is not None:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await sub.unsubscribe()
            raise watch.seen.error(self._who())
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await sub.unsubscribe()
                except Exception as exc:  # connection gone: nothing left to undo
                    self._log.debug("unsubscribe_failed", subject=subject, error=repr(exc))

    async def _flush(self, nc: NATS, subject: str) -> None:
        try:
            await nc.flush(timeout=max(1, int(self.request_timeout)))
        except (nats.errors.Error, OSError) as exc:
            raise FabricUnavailable(
                f"subscription to {subject!r} not confirmed by the server within "
                f"{self.request_timeout}s ({exc!r}); is the server up?"
            ) from exc

    async def js_publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, timeout: float
    ) -> PubAck:
        """A JetStream publish that rides through a server restart within ``timeout`` s.

        A message with a ``Nats-Msg-Id`` is sent again when the connection is
        re-established before its ack arrives (the ack left with the old
        connection; the stream drops a copy it already holds). Any message is
        sent again when nothing answered it (``503``) because JetStream itself
        is not answering, as while a server shuts down; two ``503`` while
        JetStream answers mean no stream captures ``subject``: that raises
        :class:`FabricUnavailable`. Raises :class:`PublishTimeout` after ``timeout`` s.
        """
        with (
            anyio.CancelScope() as denied,
            self.violations.watch(refuses_publish(subject), denied.cancel) as watch,
        ):
            return await self._publish_acked(subject, payload, headers, timeout)
        assert watch.seen is not None  # only a violation cancels `denied`
        raise watch.seen.error(self._who())

    def _who(self) -> str:
        return self.auth.describe() if self.auth is not None else "this connection"

    async def _publish_acked(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, timeout: float
    ) -> PubAck:
        try:
            return await self._js_publish(subject, payload, headers, timeout)
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
        except nats.js.errors.APIError as exc:
            if "maximum" in (exc.description or "") and "exceeded" in (exc.description or ""):
                raise StreamFull(
                    f"publish to {subject!r} refused: its stream is full ({exc.description}) "
                    "and set to discard new messages; slow down, or raise its max_msgs/"
                    "max_bytes (for an edge: rate x longest outage, see origin_limits)"
                ) from exc
            raise

    async def _js_publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, timeout: float
    ) -> PubAck:
        resend = headers is not None and MSG_ID in headers
        deadline = time.monotonic() + timeout
        no_stream = False
        while True:
            with anyio.CancelScope() as scope:
                remove = self.on_reconnect(scope.cancel) if resend else None
                try:
                    left = max(deadline - time.monotonic(), 0.001)
                    js = self.jetstream()
                    return await js.publish(subject, payload, timeout=left, headers=headers)
                except nats.js.errors.NoStreamResponseError:
                    # the 503 may come from a server going away, the probe from the next one:
                    # only a second 503 with JetStream answering means there is no stream
                    if time.monotonic() >= deadline:
                        raise
                    if await self._jetstream_answers(deadline):
                        if no_stream:
                            raise
                        no_stream = True
                finally:
                    if remove is not None:
                        remove()
            if time.monotonic() >= deadline:
                raise nats.errors.TimeoutError
            if scope.cancelled_caught:
                self._log.info("publish_resent", subject=subject, reason="reconnected")
            else:
                self._log.debug("publish_retried", subject=subject, reason="no_responders")
                await anyio.sleep(0.02)

    async def _jetstream_answers(self, deadline: float) -> bool:
        """Whether the connected server's JetStream answers an account-info request.

        A server shutting down still answers, with an error ("jetstream not enabled").
        """
        try:
            left = min(1.0, max(deadline - time.monotonic(), 0.001))
            msg = await self.client.request(_jsapi.info_subject(), b"", timeout=left)
            answer = json.loads(msg.data)
        except (nats.errors.Error, OSError, FabricUnavailable, ValueError):
            return False
        return isinstance(answer, dict) and "error" not in answer

    async def request(self, subject: str, payload: bytes, timeout: float) -> Inbound:
        with (
            anyio.CancelScope() as denied,
            self.violations.watch(refuses_publish(subject), denied.cancel) as watch,
        ):
            return await self._request(subject, payload, timeout)
        assert watch.seen is not None  # only a violation cancels `denied`
        raise watch.seen.error(self._who())

    async def _request(self, subject: str, payload: bytes, timeout: float) -> Inbound:
        try:
            msg = await self.client.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NoResponders(
                f"nobody serves {subject!r}: start the service, or check the link to it"
            ) from None
        except nats.errors.TimeoutError:
            raise TimeoutError(f"no answer from {subject!r} within {timeout}s") from None
        except (nats.errors.Error, OSError) as exc:
            raise FabricUnavailable(f"request to {subject!r} failed: {exc!r}") from exc
        return Inbound._of(msg, self)

    @contextlib.asynccontextmanager
    async def inbox(self) -> AsyncIterator[Inbox]:
        nc = self.client
        subject = nc.new_inbox()
        sub = await nc.subscribe(subject)
        try:
            yield Inbox(self, subject, sub)
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await sub.unsubscribe()
