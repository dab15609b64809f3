"""The JetStream pull-consumer protocol: one durable consumer of one subject, paced by its owner.

A :class:`PullConsumer` is created at the sequence its owner names, whatever
the broker remembers, and delivers each stream sequence of its subject once,
in order. Its owner decides how much to ask for (a ``credit`` callback,
called whenever the consumer could send a pull request) and what to do with
each :class:`Delivery` (a ``deliver`` callback); the consumer speaks the
protocol: pull requests of ``batch`` messages and ``max_bytes`` bytes, idle
heartbeats, the 404/408/409 statuses that end a request or mean the consumer
is gone, and acknowledgements.

A consumer whose pull requests stop answering (no message and no idle
heartbeat for three heartbeat intervals), that the server deleted, or whose
connection was re-established, is recreated from the next sequence it has not
delivered; duplicates from overlapping deliveries are dropped by sequence. A
reconnect abandons an attempt to create the consumer still waiting on the old
connection (after a graceful restart it went to the server going away, which
never answers) and starts again at once. A delivery that skips sequences is
first taken for messages lost in transit (pushed into a connection that broke,
which the consumer counts as delivered): the consumer is recreated at the
first missing sequence, and only if it skips them again is the delivery marked
with ``gap_from``, the first sequence the stream no longer holds.

An event input (a pattern under ``diaspora.events.``) filters the one
``DIASPORA_EVENTS`` stream, so its stream sequences have holes (the other
events) by nature. Such a *sparse* consumer watches the consumer sequence of
each delivery instead (contiguous from 1 for every consumer it creates): a
skip there is a message lost in transit, and the consumer is recreated at
the next stream sequence; ``gap_from`` is never set (the stream cannot say
whether the events it dropped matched the filter).
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from diaspora.backoff import Backoff
from diaspora.clock import Clock, SystemClock
from diaspora.errors import ConfigError, FabricUnavailable
from diaspora.fabric import _jsapi
from diaspora.fabric._naming import is_event_input, stream_name
from diaspora.log import get_logger

if TYPE_CHECKING:
    from diaspora.fabric._connection import Connection

__all__ = ["ConsumerSettings", "Credit", "Delivery", "PullConsumer"]

#: Between attempts to create a consumer: uniform in [0.05, 0.1] s at first, [1, 2] s at most.
_CREATE_BACKOFF: Final = Backoff(initial=0.075, max=1.5, jitter=1 / 3)
#: A consumer with requests open and no message or heartbeat for this many heartbeats is dead.
_SILENT_HEARTBEATS: Final = 3

#: What the owner asks for next: (messages, bytes), or ``None`` for nothing now.
Credit = Callable[[], tuple[int, int] | None]


@dataclass(slots=True)
class Delivery:
    """One stored message as a consumer delivers it (payload not yet decoded)."""

    subject: str
    seq: int
    payload: bytes
    headers: dict[str, str] | None
    timestamp: float
    pending: int
    reply: str
    #: first sequence of a gap just before this message (items the stream no longer has)
    gap_from: int | None = None


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How a pull consumer is configured on the server and paced (seconds).

    ``heartbeat`` is the idle heartbeat asked of each pull request, which
    expires after ``expires``; ``ack_wait`` is how long the server waits for an
    acknowledgement before delivering again; ``inactive_threshold`` is how long
    an unused consumer is kept.
    """

    max_ack_pending: int = 2048
    heartbeat: float = 2.0
    expires: float = 30.0
    ack_wait: float = 300.0
    inactive_threshold: float = 3600.0

    def __post_init__(self) -> None:
        for name in ("heartbeat", "expires", "ack_wait", "inactive_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"consumer settings: {name}={value!r} must be > 0 seconds")
        if self.expires <= self.heartbeat:
            raise ConfigError(
                f"consumer settings: expires={self.expires} must exceed "
                f"heartbeat={self.heartbeat} (a request must live through a heartbeat)"
            )
        if self.max_ack_pending < 1:
            raise ConfigError(
                f"consumer settings: max_ack_pending={self.max_ack_pending!r} must be >= 1"
            )


class PullConsumer:
    """A durable pull consumer of ``subject``, named ``name``, from ``start_seq`` on.

    Obtain one with :meth:`diaspora.fabric.Fabric.pull_consumer`, run it in a
    task group (:meth:`run` returns only when cancelled), and :meth:`wake` it
    when its owner's ``credit`` may have grown.
    """

    def __init__(
        self,
        connection: Connection,
        subject: str,
        name: str,
        *,
        start_seq: int,
        deliver: Callable[[Delivery], None],
        credit: Credit,
        settings: ConsumerSettings,
        reconnects: Callable[[], int],
        clock: Clock | None = None,
        domain: str | None = None,
    ) -> None:
        self._connection = connection
        self.subject = subject
        self.name = name
        self.stream = stream_name(subject)
        #: A filter of a stream holding other subjects too: stream sequences have holes.
        self.sparse = is_event_input(subject)
        self.domain = domain
        self.settings = settings
        self._deliver = deliver
        self._credit = credit
        self._reconnects = reconnects
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = random.Random()
        #: The next stream sequence to deliver.
        self.next_seq = max(1, start_seq)
        #: The last sequence delivered, and how many the server said were pending after it.
        self.last_seq = start_seq - 1
        self.last_pending = 0
        #: Messages and bytes asked for and not yet arrived (open pull requests).
        self.outstanding = 0
        self.outstanding_bytes = 0
        #: Times the consumer was recreated (reconnects, silent or deleted consumers).
        self.resets = 0
        self._last_activity = self._clock.monotonic()
        self._reset = False
        self._gap_checked = 0  # next_seq at which a skip forward was last re-checked
        self._consumer_seq = 0  # last consumer sequence seen since the consumer was created
        self._wake = anyio.Event()
        self._attempt_scope: anyio.CancelScope | None = None
        self._sub: Subscription | None = None
        self._inbox = ""
        #: open pull requests by the last token of their reply subject: [messages, bytes] left
        self._requests: dict[str, list[int]] = {}
        self._request_no = 0
        self._log = get_logger(subject=subject, consumer=name)

    def wake(self) -> None:
        """Reconsider pulling now (the owner's credit grew, or the connection came back)."""
        self._wake.set()

    async def ack(self, delivery: Delivery) -> bool:
        """Acknowledge ``delivery`` and, the policy being cumulative, all before it.

        Best effort: ``False`` when the connection is down (the next one covers these).
        """
        return await self._connection.publish_core(delivery.reply, _jsapi.ACK)

    async def run(self) -> None:
        """Create the consumer and keep it delivering until cancelled, recreating it as needed."""
        remove = self._on_reconnect()
        try:
            attempt = 0
            while True:
                seen_reconnects = self._reconnects()
                # A reconnect during the attempt (or its backoff) cancels it: a request sent
                # to a server that was going away ("409 Server Shutdown") is never answered,
                # and waiting out its timeout would stall the consumer for request_timeout.
                with anyio.CancelScope() as scope:
                    self._attempt_scope = scope
                    try:
                        await self._create()
                        attempt = 0
                    except (
                        nats.errors.Error,
                        nats.js.errors.Error,
                        FabricUnavailable,
                        OSError,
                        TimeoutError,
                    ) as exc:
                        attempt += 1
                        if attempt == 1 or attempt % 10 == 0:
                            self._log.warning(
                                "consumer_create_failed", attempt=attempt, error=repr(exc)
                            )
                        await self._clock.sleep(_CREATE_BACKOFF.delay(attempt, self._rng))
                        continue
                self._attempt_scope = None
                if scope.cancelled_caught or self._reconnects() != seen_reconnects:
                    # cancelled, or created on the server that was going away: start afresh
                    await self._drop_subscription()
                    self._log.info("consumer_create_restarted", reason="reconnected")
                    continue
                try:
                    await self._pull_loop(seen_reconnects)
                finally:
                    await self._drop_subscription()
                self.resets += 1
                self._log.info("consumer_reset", next_seq=self.next_seq, resets=self.resets)
        finally:
            remove()

    def _on_reconnect(self) -> Callable[[], None]:
        return self._connection.on_reconnect(self._reconnected)

    def _reconnected(self) -> None:
        # its pull requests died with the old connection: renew them at once; an attempt to
        # create the consumer still waiting on the old connection is abandoned
        if self._attempt_scope is not None:
            self._attempt_scope.cancel()
        self.wake()

    async def _create(self) -> None:
        js = self._connection.jetstream(self.domain)
        settings = self.settings
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(self.stream, self.name)
        await js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=self.name,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.next_seq,
                ack_policy=AckPolicy.ALL,
                ack_wait=settings.ack_wait,
                max_ack_pending=settings.max_ack_pending,
                filter_subject=self.subject,
                inactive_threshold=settings.inactive_threshold,
                max_deliver=-1,
            ),
        )
        nc = self._connection.client
        self._inbox = nc.new_inbox()
        self._sub = await nc.subscribe(
            self._inbox + ".*", cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        self.outstanding = 0
        self.outstanding_bytes = 0
        self._requests.clear()
        self._reset = False
        self._consumer_seq = 0
        self._last_activity = self._clock.monotonic()
        self._log.debug("consumer_created", start_seq=self.next_seq, domain=self.domain)

    async def _drop_subscription(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _pull_loop(self, seen_reconnects: int) -> None:
        heartbeat = self.settings.heartbeat
        dead_after = _SILENT_HEARTBEATS * heartbeat
        while True:
            if self._reset or self._reconnects() != seen_reconnects:
                return
            silent = self._clock.monotonic() - self._last_activity
            if self.outstanding > 0 and silent > dead_after:
                self._log.warning("consumer_silent", silent_s=round(silent, 2))
                return
            await self._maybe_pull()
            event = self._wake
            with anyio.move_on_after(heartbeat / 2):
                await event.wait()
            if self._wake is event:
                self._wake = anyio.Event()

    async def _maybe_pull(self) -> None:
        credit = self._credit()
        if credit is None:
            return
        batch, max_bytes = credit
        if batch < 1:
            return
        max_bytes = max(max_bytes, 1)
        request = {
            "batch": batch,
            "max_bytes": max_bytes,
            "expires": int(self.settings.expires * 1e9),
            "idle_heartbeat": int(self.settings.heartbeat * 1e9),
        }
        subject = _jsapi.next_subject(self.stream, self.name, domain=self.domain)
        # each request has its own reply subject: the server serves open requests in turn
        # (not one after the other), so only the subject says which one a message counts on
        self._request_no += 1
        token = str(self._request_no)
        try:
            # not publish_core: while reconnecting, nats-py buffers this and sends it once
            # back, and the reconnect renews the consumer anyway
            await self._connection.client.publish(
                subject, json.dumps(request).encode(), reply=f"{self._inbox}.{token}"
            )
        except (nats.errors.Error, FabricUnavailable, OSError) as exc:
            self._log.debug("pull_failed", error=repr(exc))
            self._reset = True
            return
        self._requests[token] = [batch, max_bytes]
        self.outstanding += batch
        self.outstanding_bytes += max_bytes
        self._last_activity = self._clock.monotonic()

    def _consume_credit(self, token: str, size: int) -> None:
        """A message arrived for request ``token``: it counts against that request."""
        request = self._requests.get(token)
        if request is None:
            return  # a request this consumer has already given up (a reset)
        request[0] -= 1
        request[1] -= size
        self.outstanding -= 1
        self.outstanding_bytes -= size
        if request[0] <= 0 or request[1] <= 0:
            self._end_request(token)

    def _end_request(self, token: str) -> None:
        """Pull request ``token`` is over: its unused credit is gone; ask again."""
        request = self._requests.pop(token, None)
        if request is not None:
            msgs, size = request
            self.outstanding -= max(0, msgs)
            self.outstanding_bytes -= max(0, size)
        if not self._requests:
            self.outstanding = self.outstanding_bytes = 0
        self.wake()

    async def _on_msg(self, msg: Msg) -> None:
        self._last_activity = self._clock.monotonic()
        if not msg.reply:
            self._on_status(msg)
            return
        try:
            seq, timestamp, pending = _jsapi.parse_ack_subject(msg.reply)
        except (IndexError, ValueError):
            self._log.warning("unexpected_delivery", reply=msg.reply)
            return
        self._consume_credit(msg.subject.rpartition(".")[2], len(msg.data))
        if self._reset:
            return  # the consumer is being recreated from next_seq: it delivers this again
        if self.sparse and self._lost_in_transit(msg.reply, seq):
            return
        if seq < self.next_seq:
            return  # delivered again after a reset: already delivered once
        gap_from = None
        if seq > self.next_seq and not self.sparse:
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
        self._deliver(
            Delivery(
                self.subject, seq, msg.data, msg.headers, timestamp, pending, msg.reply, gap_from
            )
        )

    def _lost_in_transit(self, reply: str, seq: int) -> bool:
        """A sparse consumer skipped consumer sequences: recreate it at ``next_seq``."""
        consumer_seq = _jsapi.parse_consumer_seq(reply)
        if consumer_seq > self._consumer_seq + 1:
            self._log.info(
                "consumer_skipped",
                next_seq=self.next_seq,
                delivered=seq,
                consumer_seq=consumer_seq,
                expected=self._consumer_seq + 1,
            )
            self._reset = True
            self.wake()
            return True
        self._consumer_seq = max(self._consumer_seq, consumer_seq)
        return False

    def _on_status(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(_jsapi.STATUS, "")
        if status == _jsapi.HEARTBEAT:
            return  # idle heartbeat: the consumer is alive
        description = headers.get(_jsapi.DESCRIPTION, "")
        ended = status in _jsapi.REQUEST_EXPIRED or (
            status == "409" and description.startswith(_jsapi.REQUEST_ENDED)
        )
        if ended:
            # a "Batch Completed" after the last message counted ends nothing more
            self._end_request(msg.subject.rpartition(".")[2])
            return
        self._log.info("consumer_status", status=status, description=description)
        self._reset = True
        self.wake()
