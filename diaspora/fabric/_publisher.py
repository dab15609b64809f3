"""Pipelined JetStream publishing that keeps order across connection loss and server restarts.

Why not ``js.publish_async`` on the shared connection: nats-py buffers
publishes made while it reconnects and sends them once it is back, while a
message that was on the wire when the link broke is simply lost. Resending
that lost message afterwards puts it *behind* newer ones. An
:class:`OrderedPublisher` therefore publishes on a session connection of its
own that never reconnects: when it breaks, nothing more is sent on it, so
what the server stored is a prefix of what was sent. A new session then
resends every unacknowledged message, in order; the ones the server already
had are dropped by JetStream's duplicate window (every message carries a
``Nats-Msg-Id``), the rest are appended in their original order.

The same recovery runs when acknowledgements stop arriving (a paused or
overloaded server) or JetStream answers with a retriable error (no stream
leader during an election). Only during a clustered stream's leader election
can an already-stored later message precede a resent earlier one; that is
counted in ``stats["reordered"]`` and logged, never hidden.

>>> import anyio
>>> from diaspora.fabric import Fabric
>>> async def main() -> None:
...     async with Fabric() as fabric:
...         await fabric.ensure_stream("out")
...         async with OrderedPublisher(fabric, name="demo") as pub:
...             for i in range(3):
...                 await pub.publish("out", b"x", msg_id=f"demo:{i}")
...             await pub.flush()
...             print(pub.acked, pub.stats["duplicates"])
>>> anyio.run(main)
3 0
"""

from __future__ import annotations

import contextlib
import json
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
import nats.errors
from anyio.abc import TaskGroup
from nats.aio.msg import Msg

from diaspora.backoff import Backoff
from diaspora.clock import Clock, SystemClock
from diaspora.errors import PublishError, PublishTimeout
from diaspora.fabric import _jsapi
from diaspora.fabric import headers as H
from diaspora.fabric._session import Session, SessionClient, ignore_error
from diaspora.fabric._stores import ALWAYS_INLINE, stamp
from diaspora.log import get_logger

if TYPE_CHECKING:
    from diaspora.fabric._fabric import Fabric

__all__ = ["OrderedPublisher", "PublishError"]

# JetStream errors worth retrying: none are deterministic properties of the message.
_RETRIABLE_STATUS: Final = frozenset({"503", "408"})
_MAX_DETERMINISTIC_ATTEMPTS: Final = 3
#: Between attempts to open a session: uniform in [0.05, 0.1] s at first, [1, 2] s at most.
_SESSION_BACKOFF: Final = Backoff(initial=0.075, max=1.5, jitter=1 / 3)


class _State(Enum):
    UNSENT = 0
    IN_FLIGHT = 1
    ACKED = 2
    FAILED = 3


@dataclass(slots=True, eq=False)
class _Entry:
    index: int
    subject: str
    payload: bytes
    headers: dict[str, str] | None
    state: _State = _State.UNSENT
    sent_at: float = 0.0
    attempts: int = 0
    error: str | None = None
    tokens: list[str] = field(default_factory=list)


class OrderedPublisher:
    """Pipelined, ordered, effectively-once JetStream publishing (see module docstring).

    ``publish`` returns once the message is queued (it waits only when
    ``max_pending`` messages or ``max_pending_bytes`` are unacknowledged);
    ``flush(upto)`` waits until the first ``upto`` messages are acknowledged.
    ``clock`` times acknowledgements and waits between retries (default: the
    system clock).
    """

    def __init__(
        self,
        fabric: Fabric,
        *,
        name: str,
        max_pending: int = 4096,
        max_pending_bytes: int = 64 * 1024 * 1024,
        ack_timeout: float | None = None,
        give_up_after: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._fabric = fabric
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = random.Random()
        self.name = name
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.ack_timeout = ack_timeout if ack_timeout is not None else fabric.request_timeout
        self.give_up_after = give_up_after
        self._queue: deque[_Entry] = deque()
        self._queued_bytes = 0
        self._tokens: dict[str, _Entry] = {}
        self._next_token = 0
        self._session: Session | None = None
        self._session_lock = anyio.Lock()
        self._healthy = True
        self._fatal: BaseException | None = None
        self._trouble = anyio.Event()
        self._progress = anyio.Event()
        self._tg: TaskGroup | None = None
        self.enqueued = 0
        self.acked = 0
        #: Highest stream sequence acknowledged so far, per subject.
        self.last_seq: dict[str, int] = {}
        self.stats: dict[str, int] = {
            "published": 0,
            "duplicates": 0,
            "resent": 0,
            "recoveries": 0,
            "reordered": 0,
            "sessions": 0,
        }
        self._log = get_logger(publisher=name)

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._recovery_loop)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg, self._tg = self._tg, None
        assert tg is not None
        tg.cancel_scope.cancel()
        try:
            return await tg.__aexit__(et, ev, tb)
        finally:
            session, self._session = self._session, None
            if session is not None:
                with anyio.CancelScope(shield=True):
                    await session.close()

    # -- public API --------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages queued or in flight, not yet acknowledged."""
        return self.enqueued - self.acked

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: dict[str, str] | None = None,
        msg_id: str | None = None,
    ) -> int:
        """Queue one message (sent at once when the link is healthy); return its index."""
        self._raise_if_fatal()
        while len(self._queue) >= self.max_pending or (
            self._queued_bytes >= self.max_pending_bytes and self._queue
        ):
            await self._wait_progress()
        hdrs: dict[str, str] | None
        size = len(payload)
        if size <= ALWAYS_INLINE or size <= self._fabric.inline_limit:  # no await: inline
            hdrs = stamp(headers, msg_id)
        else:
            hdrs, payload = await self._fabric.stamp_and_offload(payload, headers, msg_id)
        if hdrs is None or H.MSG_ID not in hdrs:
            raise ValueError("OrderedPublisher.publish needs a msg_id: resends rely on it")
        entry = _Entry(self.enqueued, subject, payload, hdrs)
        self._queue.append(entry)
        self._queued_bytes += len(payload)
        self.enqueued += 1
        if self._healthy and self._may_send(entry):
            await self._send(entry)
        return entry.index

    async def flush(self, upto: int | None = None) -> None:
        """Wait until messages ``[0, upto)`` (default: all queued so far) are acknowledged."""
        target = self.enqueued if upto is None else upto
        while self.acked < target:
            self._raise_if_fatal()
            await self._wait_progress()
        self._raise_if_fatal()

    # -- sending -----------------------------------------------------------------------

    def _may_send(self, entry: _Entry) -> bool:
        """Whether ``publish`` may send ``entry`` now, ahead of the recovery task.

        On the live session, yes: it follows what was sent before it. With no
        live session, only when nothing older is unacknowledged: a new session
        opened here would carry ``entry`` ahead of older messages lost with
        the old one, which the recovery task has yet to resend; it sends them
        all, in order.
        """
        session = self._session
        if session is not None and not session.dead:
            return True
        if self._queue and self._queue[0] is entry:
            return True
        self._trouble.set()
        return False

    async def _wait_progress(self) -> None:
        event = self._progress
        await event.wait()

    def _notify(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    async def _ensure_session(self) -> Session:
        session = self._session
        if session is not None and not session.dead:
            return session
        async with self._session_lock:
            return await self._open_session()

    async def _open_session(self) -> Session:
        session = self._session
        if session is not None and not session.dead:
            return session
        if session is not None:
            await session.close()
        self._session = None
        started = self._clock.monotonic()
        attempt = 0
        while True:
            nc = SessionClient()
            session = Session(nc, "")
            try:
                auth = self._fabric.auth
                await nc.connect(
                    **(auth.connect_options() if auth is not None else {}),
                    servers=self._fabric.urls,
                    name=f"{self.name}-publisher",
                    allow_reconnect=False,
                    connect_timeout=2,
                    closed_cb=self._on_session_closed(session),
                    disconnected_cb=self._on_session_closed(session),
                    error_cb=ignore_error,
                    # room for the pending window and one message as large as the server takes
                    pending_size=self.max_pending_bytes + self._fabric.max_payload,
                )
                session.prefix = nc.new_inbox()
                await nc.subscribe(f"{session.prefix}.*", cb=self._on_reply)
                self._session = session
                self.stats["sessions"] += 1
                self._log.debug("publisher_session", attempt=attempt + 1)
                return session
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                with contextlib.suppress(Exception):
                    await nc.close()
                attempt += 1
                waited = self._clock.monotonic() - started
                if self.give_up_after is not None and waited > self.give_up_after:
                    raise PublishTimeout(
                        f"publisher {self.name!r}: no NATS server reachable at "
                        f"{self._fabric.urls} for {waited:.0f}s ({exc!r})"
                    ) from exc
                delay = _SESSION_BACKOFF.delay(attempt, self._rng)
                if attempt % 20 == 0:
                    self._log.warning(
                        "publish_stalled", pending=self.pending, waited_s=round(waited, 1)
                    )
                await self._clock.sleep(delay)

    def _on_session_closed(self, session: Session) -> Callable[[], Awaitable[None]]:
        async def closed() -> None:
            session.dead = True
            if session is self._session:
                # a session already replaced (closed by recovery) is no news
                self._trouble.set()

        return closed

    async def _send(self, entry: _Entry) -> None:
        try:
            session = self._session  # the live session, without a coroutine on each message
            if session is None or session.dead:
                session = await self._ensure_session()
            token = str(self._next_token)
            self._next_token += 1
            entry.tokens.append(token)
            self._tokens[token] = entry
            entry.state = _State.IN_FLIGHT
            entry.sent_at = self._clock.monotonic()
            entry.attempts += 1
            await session.nc.publish(
                entry.subject,
                entry.payload,
                reply=f"{session.prefix}.{token}",
                headers=entry.headers,
            )
        except (OSError, nats.errors.Error) as exc:
            self._log.debug("publish_send_failed", error=repr(exc))
            if self._session is not None:
                self._session.dead = True
            self._trouble.set()

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject.rsplit(".", 1)[-1]
        if token.startswith("probe"):
            session = self._session
            if session is not None and session.answered is not None:
                session.answered.set()
            return
        entry = self._tokens.get(token)
        if entry is None or entry.state is _State.ACKED:
            return
        status = msg.headers.get(_jsapi.STATUS) if msg.headers else None
        if status is not None:
            entry.state = _State.FAILED
            entry.error = f"status {status}"
            if status not in _RETRIABLE_STATUS:
                entry.error = f"status {status}: {msg.headers.get(_jsapi.DESCRIPTION, '')}"  # type: ignore[union-attr]
            self._healthy = False  # later messages wait for its resend, not overtake it
            self._trouble.set()
            return
        try:
            reply: dict[str, Any] = json.loads(msg.data)
        except ValueError:
            reply = {"error": {"description": f"unreadable ack {msg.data[:80]!r}"}}
        error = reply.get("error")
        if error is not None:
            entry.state = _State.FAILED
            code = f"{error.get('code', '')}/{error.get('err_code', '')}"
            entry.error = f"{code} {error.get('description', '')}"
            self._healthy = False
            self._trouble.set()
            return
        entry.state = _State.ACKED
        seq = reply.get("seq")
        if isinstance(seq, int) and seq > self.last_seq.get(entry.subject, 0):
            self.last_seq[entry.subject] = seq
        if reply.get("duplicate"):
            self.stats["duplicates"] += 1
        else:
            self.stats["published"] += 1
        for t in entry.tokens:
            self._tokens.pop(t, None)
        self._advance()

    def _advance(self) -> None:
        moved = False
        while self._queue and self._queue[0].state is _State.ACKED:
            done = self._queue.popleft()
            self._queued_bytes -= len(done.payload)
            self.acked += 1
            moved = True
        if moved:
            self._notify()

    # -- recovery ----------------------------------------------------------------------

    async def _recovery_loop(self) -> None:
        while True:
            with anyio.move_on_after(max(self.ack_timeout / 4, 0.05)):
                await self._trouble.wait()
            # an unfinished recovery (_healthy false) is resumed as well
            if self._healthy and not self._trouble.is_set() and not self._timed_out():
                continue
            try:
                await self._recover()
            except PublishError as exc:
                self._fatal = exc
                self._notify()
                return
            except PublishTimeout as exc:
                self._fatal = exc
                self._notify()
                return

    def _timed_out(self) -> bool:
        now = self._clock.monotonic()
        for entry in self._queue:
            if entry.state is _State.IN_FLIGHT:
                return now - entry.sent_at > self.ack_timeout
        return False

    async def _recover(self) -> None:
        self._trouble = anyio.Event()
        session = self._session
        failed = any(e.state is _State.FAILED for e in self._queue)
        if session is not None and not session.dead and not failed and self._healthy:
            # only missing acks so far: a live connection loses nothing, so first ask
            # whether the server answers at all
            try:
                alive = await session.probe(max(1.0, self.ack_timeout))
            except (OSError, nats.errors.Error):
                session.dead = True
            else:
                if not alive:
                    # hung or paused server: what was sent waits in order on the socket
                    self._log.warning("publish_stalled", pending=self.pending, reason="no answer")
                    return
                if not self._timed_out():
                    return
        self._healthy = False
        self.stats["recoveries"] += 1
        # let in-flight messages settle: acknowledged, failed, or timed out
        deadline = self._clock.monotonic() + self.ack_timeout
        while self._clock.monotonic() < deadline:
            session = self._session
            if session is None or session.dead:
                break
            if not any(e.state is _State.IN_FLIGHT for e in self._queue):
                break
            await self._clock.sleep(0.01)
        self._check_deterministic_failures()
        states = [e.state for e in self._queue]
        first_gap = next((i for i, st in enumerate(states) if st is not _State.ACKED), None)
        if first_gap is not None:
            later_acked = sum(1 for st in states[first_gap:] if st is _State.ACKED)
            if later_acked:
                self.stats["reordered"] += later_acked
                self._log.warning("publish_reordered", count=later_acked)
        session = self._session
        if session is not None and session.dead:
            self._session = None
            await session.close()
        resent = 0
        cursor = self._queue[0].index if self._queue else self.enqueued
        while self._queue and cursor <= self._queue[-1].index:
            offset = cursor - self._queue[0].index
            cursor += 1
            if offset < 0 or self._queue[offset].state is _State.ACKED:
                continue
            await self._send(self._queue[offset])
            resent += 1
            if self._trouble.is_set():
                # the new session broke as well: the loop comes back here
                break
        self.stats["resent"] += resent
        self._log.info("publish_recovered", resent=resent, pending=self.pending)
        self._healthy = not self._trouble.is_set()

    def _check_deterministic_failures(self) -> None:
        for entry in self._queue:
            if entry.state is not _State.FAILED or entry.error is None:
                continue
            retriable = entry.error.startswith("status ") and entry.error[7:10] in _RETRIABLE_STATUS
            if not retriable and entry.attempts >= _MAX_DETERMINISTIC_ATTEMPTS:
                raise PublishError(
                    f"JetStream refused message {entry.index} on {entry.subject!r} "
                    f"{entry.attempts} times: {entry.error}"
                )
