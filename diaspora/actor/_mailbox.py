"""An actor's mailbox: the fabric's pull consumers on its inputs, with credit-based flow control.

One consumer per input subject (a :class:`~diaspora.fabric.PullConsumer`,
which speaks the JetStream protocol), created at the position the actor's
checkpoint names (``position + 1``), whatever the broker remembers. The
mailbox keeps at most ``max_in_flight`` messages (and ``max_bytes`` bytes)
requested-or-buffered per input: it asks for more with pull requests of up to
``batch`` messages as the actor drains its buffer, so a slow actor slows its
consumers down instead of growing memory (backpressure). The byte window also
keeps a process below the server's per-client ``max_pending`` (64 MiB by
default), past which the server drops the connection as a slow consumer.
Acknowledgements are cumulative, one per half batch of handled messages,
never a round trip per message; the server's ``max_ack_pending`` bounds the
unacknowledged window.

An event input (a pattern under ``diaspora.events.``) is a consumer of the
``DIASPORA_EVENTS`` stream filtered by the pattern, named after it too (see
:func:`consumer_name`), so several event inputs of one actor never clash.

Each input delivers every stream sequence once, in order; a consumer that
goes silent, is deleted, or loses its connection is recreated from the next
sequence by the fabric, and a skip the stream cannot fill arrives as
:attr:`Delivery.gap_from`.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping, Sequence

import anyio
from anyio.abc import TaskStatus

from diaspora.clock import Clock, SystemClock
from diaspora.errors import ConfigError
from diaspora.fabric import ConsumerSettings, Delivery, Fabric, PullConsumer, is_event_input
from diaspora.fabric._naming import partition_pattern, token
from diaspora.fabric._partitions import partition_consumer, partition_filters
from diaspora.log import get_logger

__all__ = ["Delivery", "Mailbox", "consumer_name", "input_filters"]


def consumer_name(actor: str, subject: str | None = None) -> str:
    """The durable consumer name an actor uses on one of its input streams.

    Each input has its own stream, except event inputs, which share the
    events stream: their names carry a digest of the pattern.

    >>> consumer_name("edge1.sum"), consumer_name("edge1.sum", "edge1.patterns")
    ('dsp-edge1_sum', 'dsp-edge1_sum')
    >>> consumer_name("edge1.sum", "diaspora.events.actor.*.lag")
    'dsp-edge1_sum-ev-34f4b858dbf7'
    """
    name = "dsp-" + token(actor).replace("/", "_").replace("\\", "_")
    if subject is None or not is_event_input(subject):
        return name
    digest = hashlib.blake2b(subject.encode(), digest_size=6).hexdigest()
    return f"{name}-ev-{digest}"


class _Input:
    """One input of the mailbox: its consumer and what of it is buffered, not yet taken."""

    def __init__(
        self, mailbox: Mailbox, subject: str, start_seq: int, filters: Sequence[str] | None
    ) -> None:
        self.mailbox = mailbox
        self.subject = subject
        self.buffered = 0
        self.buffered_bytes = 0
        name = consumer_name(mailbox.actor, subject)
        fabric, settings = mailbox.fabric, mailbox._settings
        self.consumer: PullConsumer = (
            fabric.pull_consumer(
                subject,
                name,
                start_seq=start_seq,
                deliver=self._deliver,
                credit=self._credit,
                settings=settings,
                clock=mailbox._clock,
            )
            if filters is None
            else partition_consumer(
                fabric,
                subject,
                name,
                filters,
                start_seq=start_seq,
                deliver=self._deliver,
                credit=self._credit,
                settings=settings,
                clock=mailbox._clock,
            )
        )

    def _credit(self) -> tuple[int, int] | None:
        """Ask for more when less than half a batch (or half the byte window) is on its way."""
        mb = self.mailbox
        consumer = self.consumer
        batch, window = mb.batch, mb.max_bytes
        outstanding, outstanding_bytes = consumer.outstanding, consumer.outstanding_bytes
        if outstanding > batch // 2 and outstanding_bytes > window // 2:
            return None
        want = min(batch - outstanding, mb.max_in_flight - self.buffered - outstanding)
        # at most half the byte window per request, so a second one can overlap the first
        budget = min(window // 2, window - self.buffered_bytes - outstanding_bytes)
        if not (outstanding or self.buffered):
            # one message may be as large as the server allows, whatever the window
            budget = max(budget, mb.fabric.max_payload)
        elif want < max(1, batch // 4) or budget < window // 4:
            return None
        return want, max(budget, 1)

    def _deliver(self, delivery: Delivery) -> None:
        self.buffered += 1
        self.buffered_bytes += len(delivery.payload)
        mailbox = self.mailbox
        mailbox._queue.append(delivery)
        mailbox._arrived.set()

    def taken(self, delivery: Delivery) -> None:
        self.buffered -= 1
        self.buffered_bytes -= len(delivery.payload)


class Mailbox:
    """Pull consumers for every input of one actor, merged into one queue.

    ``starts[subject]`` is the first stream sequence to deliver. Run it in a
    task group (``await tg.start(mailbox.run)``), ``await take()`` batches of
    :class:`Delivery`, call :meth:`handled` after each, and cancel the task
    group to stop. ``clock`` times heartbeats and retries (default: the system
    clock).
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
        clock: Clock | None = None,
        filters: Mapping[str, Sequence[str]] | None = None,
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
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._settings = ConsumerSettings(
            max_ack_pending=2 * max_in_flight,
            heartbeat=heartbeat,
            expires=expires,
            ack_wait=ack_wait,
            inactive_threshold=inactive_threshold,
        )
        self._log = get_logger(actor=actor)
        only = filters or {}
        self._inputs = {s: _Input(self, s, seq, only.get(s)) for s, seq in starts.items()}
        self._queue: deque[Delivery] = deque()
        self._arrived = anyio.Event()
        self._unacked: dict[str, tuple[Delivery, int]] = {}
        self._ack_every = max(1, batch // 2)

    @property
    def subjects(self) -> list[str]:
        return list(self._inputs)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every input's consumer until cancelled (each renews itself on reconnect)."""
        async with anyio.create_task_group() as tg:
            for source in self._inputs.values():
                tg.start_soon(source.consumer.run)
            task_status.started()

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
            self._inputs[delivery.subject].taken(delivery)
        if out:
            for source in self._inputs.values():
                source.consumer.wake()
        return out

    def handled(self, delivery: Delivery) -> None:
        """Note that ``delivery`` was handled (acknowledged later, cumulatively)."""
        count = self._unacked[delivery.subject][1] + 1 if delivery.subject in self._unacked else 1
        self._unacked[delivery.subject] = (delivery, count)

    async def ack(self, *, force: bool = False) -> None:
        """Acknowledge inputs with half a batch handled since their last ack (all, if ``force``).

        Called once per batch, and with ``force`` at idle times and checkpoints.
        """
        if not self._unacked or not self.fabric.is_connected:
            return  # acks are flow control only; the next one covers these
        for subject, (delivery, count) in list(self._unacked.items()):
            if force or count >= self._ack_every:
                del self._unacked[subject]
                if not await self._inputs[subject].consumer.ack(delivery):
                    self._log.debug("ack_failed", subject=subject, seq=delivery.seq)

    def head(self, subject: str) -> int:
        """The newest stream sequence of ``subject`` the mailbox knows of (delivered or pending)."""
        consumer = self._inputs[subject].consumer
        return consumer.last_seq + consumer.last_pending


def input_filters(
    actor: str, subject: str, split: int, partition: tuple[int, int] | None
) -> list[str]:
    """What of ``subject``, split into ``split`` partitions, this runtime reads: all of it,
    or partition ``k``'s share if it is partition ``k`` of ``split``."""
    if partition is None:
        return [subject, partition_pattern(subject)]
    k, n = partition
    if split != n:
        raise ConfigError(
            f"actor {actor!r}: input {subject!r} is split into {split} partitions but this "
            f"runtime is partition {k} of {n}; use partitions={split} for its scale-out group"
        )
    return partition_filters(subject, k)
