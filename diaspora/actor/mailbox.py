"""An actor's mailbox: JetStream pull consumers on its inputs, with credit-based flow control.

One consumer per input subject, created at the position the actor's
checkpoint names (``position + 1``), whatever the broker remembers. The
mailbox keeps at most ``max_in_flight`` messages (and ``max_bytes`` bytes)
requested-or-buffered per input: it asks for more with pull requests of up to
``batch`` messages as the actor drains its buffer, so a slow actor slows its
consumers down instead of growing memory (backpressure). The byte window also
keeps a process below the server's per-client ``max_pending`` (64 MiB by
default), past which the server drops the connection as a slow consumer. Acknowledgements are
cumulative (``AckPolicy.ALL``), one per half batch of handled messages, never
a round trip per message; the server's ``max_ack_pending`` bounds the
unacknowledged window.

A consumer whose pull requests stop answering (no message and no idle
heartbeat for three heartbeat intervals), that the server deleted, or whose
connection was re-established, is recreated from the next sequence the
mailbox has not seen; duplicates from overlapping deliveries are dropped by
sequence, so the actor sees each stream sequence once, in order per input.
A delivery that skips sequences is first taken for messages lost in transit
(pushed into a connection that broke, which the consumer counts as delivered):
the consumer is recreated at the first missing sequence, and only if it skips
them again are they reported as a gap the stream no longer holds.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import anyio
import nats.errors
import nats.js.errors
from anyio.abc import TaskStatus
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from diaspora.fabric import Fabric, stream_name
from diaspora.fabric.naming import token
from diaspora.fabric.server import DEFAULT_MAX_PAYLOAD
from diaspora.log import get_logger

__all__ = ["Delivery", "Mailbox", "consumer_name"]

_STATUS: Final = "Status"
_DESCRIPTION: Final = "Description"
#: 409 descriptions that only end one pull request; anything else resets the consumer.
_REQUEST_ENDED: Final = (
    "Message Size Exceeds MaxBytes",
    "Batch Completed",
    "Exceeded MaxWaiting",
    "Exceeded MaxRequestBatch",
    "Exceeded MaxRequestExpires",
    "Exceeded MaxRequestMaxBytes",
)


def consumer_name(actor: str) -> str:
    """The durable consumer name an actor uses on each of its input streams."""
    return "dsp-" + token(actor).replace("/", "_").replace("\\", "_")


@dataclass(slots=True)
class Delivery:
    """One message as the mailbox hands it to the runtime (not yet decoded)."""

    subject: str
    seq: int
    payload: bytes
    headers: dict[str, str] | None
    timestamp: float
    pending: int
    reply: str
    #: first sequence of a gap just before this message (items the stream no longer has)
    gap_from: int | None = None


def _parse_ack_subject(reply: str) -> tuple[int, float, int]:
    """(stream seq, timestamp s, num pending) from a ``$JS.ACK...`` reply subject."""
    parts = reply.split(".")
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    # or, with domain and account hash: $JS.ACK.<domain>.<hash>.<stream>... .<pending>.<token>
    base = 2 if len(parts) == 9 else 4
    return int(parts[base + 3]), int(parts[base + 5]) / 1e9, int(parts[base + 6])


class _Puller:
    """Pull consumer of one input subject, feeding the shared mailbox queue."""

    def __init__(self, mailbox: Mailbox, subject: str, start_seq: int) -> None:
        self.mailbox = mailbox
        self.subject = subject
        self.stream = stream_name(subject)
        self.next_seq = max(1, start_seq)
        self.buffered = 0
        self.buffered_bytes = 0
        self.outstanding = 0
        self.outstanding_bytes = 0
        self.last_activity = time.monotonic()
        self.last_pending = 0
        self.last_seq = start_seq - 1
        self.resets = 0
        self._reset = False
        self._gap_checked = 0  # next_seq at which a skip forward was last re-checked
        self._wake = anyio.Event()
        self._sub: Subscription | None = None
        self._inbox = ""
        self._pull_subject = ""
        self._requests: deque[list[int]] = deque()  # open pull requests: [messages, bytes] left
        self._log = mailbox._log.bind(subject=subject)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        mb = self.mailbox
        attempt = 0
        while True:
            seen_reconnects = mb.fabric.reconnects
            try:
                await self._create()
                attempt = 0
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                attempt += 1
                delay = min(2.0, 0.05 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.0)
                if attempt == 1 or attempt % 10 == 0:
                    self._log.warning("consumer_create_failed", attempt=attempt, error=repr(exc))
                await anyio.sleep(delay)
                continue
            try:
                await self._pull_loop(seen_reconnects)
            finally:
                await self._drop_subscription()
            self.resets += 1
            self._log.info("consumer_reset", next_seq=self.next_seq, resets=self.resets)

    async def _create(self) -> None:
        mb = self.mailbox
        js = mb.fabric.js
        name = mb.consumer
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(self.stream, name)
        await js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=name,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.next_seq,
                ack_policy=AckPolicy.ALL,
                ack_wait=mb.ack_wait,
                max_ack_pending=2 * mb.max_in_flight,
                filter_subject=self.subject,
                inactive_threshold=mb.inactive_threshold,
                max_deliver=-1,
            ),
        )
        nc = mb.fabric.nc
        self._inbox = nc.new_inbox()
        self._sub = await nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        self._pull_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{name}"
        self.outstanding = 0
        self.outstanding_bytes = 0
        self._requests.clear()
        self._reset = False
        self.last_activity = time.monotonic()
        self._log.debug("consumer_created", consumer=name, start_seq=self.next_seq)

    async def _drop_subscription(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _pull_loop(self, seen_reconnects: int) -> None:
        mb = self.mailbox
        dead_after = 3 * mb.heartbeat
        while True:
            if self._reset or mb.fabric.reconnects != seen_reconnects:
                return
            now = time.monotonic()
            if self.outstanding > 0 and now - self.last_activity > dead_after:
                self._log.warning("consumer_silent", silent_s=round(now - self.last_activity, 2))
                return
            await self._maybe_pull()
            event = self._wake
            with anyio.move_on_after(mb.heartbeat / 2):
                await event.wait()
            if self._wake is event:
                self._wake = anyio.Event()

    async def _maybe_pull(self) -> None:
        """Ask for more when less than half a batch (or half the byte window) is on its way."""
        mb = self.mailbox
        batch = mb.batch
        if self.outstanding > batch // 2 and self.outstanding_bytes > mb.max_bytes // 2:
            return
        want = min(batch - self.outstanding, mb.max_in_flight - self.buffered - self.outstanding)
        # at most half the byte window per request, so a second one can overlap the first
        budget = min(mb.max_bytes // 2, mb.max_bytes - self.buffered_bytes - self.outstanding_bytes)
        idle = not (self.outstanding or self.buffered)
        if idle:
            # one message may be as large as the server allows, whatever the window
            budget = max(budget, DEFAULT_MAX_PAYLOAD)
        elif want < max(1, batch // 4) or budget < mb.max_bytes // 4:
            return
        budget = max(budget, 1)
        request = {
            "batch": want,
            "max_bytes": budget,
            "expires": int(mb.expires * 1e9),
            "idle_heartbeat": int(mb.heartbeat * 1e9),
        }
        try:
            await mb.fabric.nc.publish(
                self._pull_subject, json.dumps(request).encode(), reply=self._inbox
            )
        except (nats.errors.Error, OSError) as exc:
            self._log.debug("pull_failed", error=repr(exc))
            self._reset = True
            return
        self._requests.append([want, budget])
        self.outstanding += want
        self.outstanding_bytes += budget
        self.last_activity = time.monotonic()

    def _consume_credit(self, size: int) -> None:
        """A message arrived: it counts against the oldest open pull request (served first)."""
        requests = self._requests
        if not requests:
            return
        front = requests[0]
        front[0] -= 1
        front[1] -= size
        self.outstanding -= 1
        self.outstanding_bytes -= size
        if front[0] <= 0 or front[1] <= 0:
            self._end_request()

    def _end_request(self) -> None:
        """The oldest open pull request is over: its unused credit is gone; ask again."""
        if self._requests:
            msgs, size = self._requests.popleft()
            self.outstanding -= max(0, msgs)
            self.outstanding_bytes -= max(0, size)
        if not self._requests:
            self.outstanding = self.outstanding_bytes = 0
        self.wake()

    async def _on_msg(self, msg: Msg) -> None:
        self.last_activity = time.monotonic()
        if not msg.reply:
            self._on_status(msg)
            return
        try:
            seq, timestamp, pending = _parse_ack_subject(msg.reply)
        except (IndexError, ValueError):
            self._log.warning("unexpected_delivery", reply=msg.reply)
            return
        size = len(msg.data)
        self._consume_credit(size)
        if self._reset:
            return  # the consumer is being recreated from next_seq: it delivers this again
        if seq < self.next_seq:
            return  # delivered again after a reset: already queued once
        gap_from = None
        if seq > self.next_seq:
            if self._gap_checked != self.next_seq:
                # Not a gap yet: messages delivered on a connection that broke are lost in
                # transit while the consumer moves on (they wait out ack_wait). Recreate the
                # consumer at next_seq once; if it skips them again, the stream lost them.
                self._gap_checked = self.next_seq
                self._log.info("consumer_skipped", next_seq=self.next_seq, delivered=seq)
                self._reset = True
                self.wake()
                return
            gap_from = self.next_seq
        self.next_seq = seq + 1
        self.last_seq = seq
        self.last_pending = pending
        self.buffered += 1
        self.buffered_bytes += size
        self.mailbox._push(
            Delivery(
                self.subject, seq, msg.data, msg.headers, timestamp, pending, msg.reply, gap_from
            )
        )

    def _on_status(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(_STATUS, "")
        if status == "100":
            return  # idle heartbeat: the consumer is alive
        description = headers.get(_DESCRIPTION, "")
        ended = status in ("404", "408") or (
            status == "409" and description.startswith(_REQUEST_ENDED)
        )
        if ended:
            self._end_request()
            self.wake()
            return
        self._log.info("consumer_status", status=status, description=description)
        self._reset = True
        self.wake()

    def taken(self, delivery: Delivery) -> None:
        self.buffered -= 1
        self.buffered_bytes -= len(delivery.payload)


class Mailbox:
    """Pull consumers for every input of one actor, merged into one queue.

    ``starts[subject]`` is the first stream sequence to deliver. Run it in a
    task group (``await tg.start(mailbox.run)``), ``await take()`` batches of
    :class:`Delivery`, call :meth:`handled` after each, and cancel the task
    group to stop.
    """

    def __init__(
        self,
        fabric: Fabric,
        actor: str,
        starts: Mapping[str, int],
        *,
        batch: int = 256,
        max_in_flight: int = 1024,
        max_bytes: int = 16 * 1024 * 1024,
        heartbeat: float = 2.0,
        expires: float = 30.0,
        ack_wait: float = 300.0,
        inactive_threshold: float = 3600.0,
    ) -> None:
        if batch < 1 or max_in_flight < batch:
            raise ValueError(
                f"mailbox of {actor!r}: need 1 <= batch ({batch}) <= max_in_flight "
                f"({max_in_flight})"
            )
        self.fabric = fabric
        self.actor = actor
        self.consumer = consumer_name(actor)
        self.batch = batch
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        self.heartbeat = heartbeat
        self.expires = expires
        self.ack_wait = ack_wait
        self.inactive_threshold = inactive_threshold
        self._log = get_logger(actor=actor)
        self._pullers = {s: _Puller(self, s, seq) for s, seq in starts.items()}
        self._queue: deque[Delivery] = deque()
        self._arrived = anyio.Event()
        self._unacked: dict[str, tuple[str, int]] = {}
        self._ack_every = max(1, batch // 2)

    @property
    def subjects(self) -> list[str]:
        return list(self._pullers)

    def _push(self, delivery: Delivery) -> None:
        self._queue.append(delivery)
        self._arrived.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every input's consumer until cancelled.

        A reconnect wakes every consumer at once: its pull requests died with the
        old connection, so it is recreated from the next sequence it needs.
        """

        def renew() -> None:
            for puller in self._pullers.values():
                puller.wake()

        remove = self.fabric.on_reconnect(renew)
        try:
            async with anyio.create_task_group() as tg:
                for puller in self._pullers.values():
                    tg.start_soon(puller.run)
                task_status.started()
        finally:
            remove()

    def interrupt(self) -> None:
        """Wake a waiting :meth:`take` now (it returns what is there, maybe nothing)."""
        self._arrived.set()

    def __len__(self) -> int:
        return len(self._queue)

    async def take(self, limit: int, timeout: float | None = None) -> list[Delivery]:
        """Up to ``limit`` deliveries; waits up to ``timeout`` seconds for the first one."""
        if not self._queue and (timeout is None or timeout > 0):
            with anyio.move_on_after(timeout):
                await self._arrived.wait()
        if self._arrived.is_set():
            self._arrived = anyio.Event()
        queue = self._queue
        n = min(limit, len(queue))
        out = [queue.popleft() for _ in range(n)]
        for delivery in out:
            self._pullers[delivery.subject].taken(delivery)
        if out:
            for puller in self._pullers.values():
                puller.wake()
        return out

    def handled(self, delivery: Delivery) -> None:
        """Note that ``delivery`` was handled (acknowledged later, cumulatively)."""
        count = self._unacked[delivery.subject][1] + 1 if delivery.subject in self._unacked else 1
        self._unacked[delivery.subject] = (delivery.reply, count)

    async def ack(self, *, force: bool = False) -> None:
        """Acknowledge inputs with half a batch handled since their last ack (all, if ``force``).

        Called once per batch, and with ``force`` at idle times and checkpoints.
        """
        if not self._unacked:
            return
        nc = self.fabric._nc
        if nc is None or not nc.is_connected:
            return  # acks are flow control only; the next one covers these
        for subject, (reply, count) in list(self._unacked.items()):
            if force or count >= self._ack_every:
                del self._unacked[subject]
                try:
                    await nc.publish(reply, b"+ACK")
                except (nats.errors.Error, OSError) as exc:
                    self._log.debug("ack_failed", error=repr(exc))

    def head(self, subject: str) -> int:
        """The newest stream sequence of ``subject`` the mailbox knows of (delivered or pending)."""
        puller = self._pullers[subject]
        return puller.last_seq + puller.last_pending

    def lag(self, subject: str, position: int) -> int:
        """Messages of ``subject`` after ``position`` known to exist (delivered or pending)."""
        puller = self._pullers[subject]
        return max(0, puller.last_seq - position) + puller.last_pending

    def resets(self) -> int:
        """How many times a consumer was recreated (reconnects, silent or deleted consumers)."""
        return sum(p.resets for p in self._pullers.values())
