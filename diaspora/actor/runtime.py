"""Running one actor: restore, consume, handle, emit, checkpoint, catch up, dead-letter.

:class:`ActorRuntime` is what a supervisor starts (a
:class:`~diaspora.supervision.Runnable`); :func:`run_actor` runs one on its
own. The semantic contract (see the README and ``DESIGN.md``):

- **Positions live in the checkpoint.** A (re)start restores the newest
  checkpoint and consumes each input from its position + 1.
- **Checkpoints are consistent and do not stall ``handle``.** The state is
  snapshotted between two messages; the record is written in the background,
  after every output emitted before the snapshot is acknowledged.
- **Effectively-once outputs.** Every emit carries ``Nats-Msg-Id =
  <actor>:<input subject>:<input seq>:<output index>``; outputs re-emitted
  during replay are dropped by JetStream's duplicate window or, after an
  outage longer than half that window, by a scan of the outputs made since
  the checkpoint.
- **Poison messages** (undecodable, or ``handle`` raising ``max_attempts``
  times in a row on the same message) go to ``diaspora.dlq.<actor>``.

>>> import anyio
>>> from diaspora import Actor, Message
>>> from diaspora.fabric import Fabric
>>> class Double(Actor):
...     inputs = ("xs",)
...     async def handle(self, msg: Message) -> None:
...         await self.emit("doubled", {"x": 2 * msg.data["x"]})
>>> async def demo() -> None:
...     async with Fabric() as fabric:
...         await fabric.ensure_stream("xs")
...         for x in range(3):
...             await fabric.publish("xs", {"x": x})
...         runtime = ActorRuntime(Double, fabric, id="double")
...         async with anyio.create_task_group() as tg:
...             await tg.start(runtime.run)
...             await runtime.caught_up.wait()
...             runtime.request_stop()
...         print(runtime.positions, runtime.stats["emitted"])
>>> anyio.run(demo)
{'xs': 3} 3
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import traceback
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import anyio
import nats.errors
import nats.js.errors
from anyio.abc import TaskGroup, TaskStatus

from diaspora import codec
from diaspora.actor.actor import Actor
from diaspora.actor.checkpoint import Checkpoint, CheckpointSlot, FailureNote, kv_key
from diaspora.actor.faults import Fault, FaultOrder, InjectedFault, fault_subject
from diaspora.actor.mailbox import Delivery, Mailbox
from diaspora.actor.message import Message
from diaspora.errors import (
    ActorCrashed,
    CheckpointError,
    ConfigError,
    DecodeError,
    DiasporaError,
    FabricUnavailable,
    FencedOut,
)
from diaspora.fabric import Fabric, stream_name
from diaspora.fabric import headers as H
from diaspora.fabric.naming import check_subject, dlq_subject
from diaspora.fabric.publisher import OrderedPublisher
from diaspora.fabric.reader import read_stored
from diaspora.log import FilteringBoundLogger, get_logger
from diaspora.streams.flow import (
    Action,
    FlowGate,
    InputFlow,
    Mode,
    flow_subject,
    position_report,
)
from diaspora.streams.history import Gap, HistoryBuffer
from diaspora.streams.qos import Policy
from diaspora.streams.reconstruct import ReconstructionError, Reconstructor, fill_gap
from diaspora.streams.registry import lookup_qos
from diaspora.streams.replay import HistoryServer, ReplayError, fetch_history

__all__ = [
    "DEFAULT_RESTART_ALLOWANCE",
    "ActorRuntime",
    "HandlerHung",
    "partition_of",
    "required_window",
    "run_actor",
]

#: Seconds a crashed actor may take to be back and replaying before outputs
#: re-emitted during replay might fall outside the duplicate window.
DEFAULT_RESTART_ALLOWANCE: Final = 60.0
_LAG_EVERY_S: Final = 1.0
_CATCHUP_BATCH_FACTOR: Final = 4


class HandlerHung(DiasporaError, TimeoutError):
    """``handle`` ran past the actor's ``handle_deadline``; the actor is treated as crashed."""


def required_window(checkpoint_interval: float, restart_allowance: float) -> float:
    """The duplicate window (s) an actor's output streams need: ``interval + allowance``.

    Outputs emitted after the last checkpoint are re-emitted on replay; the
    oldest of them is at most ``checkpoint_interval`` seconds older than the
    crash, and the restart must replay it within ``restart_allowance``.

    >>> required_window(5.0, 60.0)
    65.0
    """
    return checkpoint_interval + restart_allowance


@dataclass(frozen=True, slots=True)
class _Snapshot:
    serial: int
    positions: dict[str, int]
    items: dict[str, int]
    out_seqs: dict[str, int]
    seen: dict[str, dict[str, int]]
    tails: dict[str, dict[str, bytes]]
    upto: int  # publisher index: outputs [0, upto) must be acknowledged first
    blob: bytes
    at: float


ActorFactory = type[Actor] | Callable[..., Actor]


class ActorRuntime:
    """Runs one actor instance until stopped, crashed or cancelled (a supervisor ``Runnable``).

    ``actor`` is an :class:`Actor` subclass or a factory called with ``args``
    as keyword arguments on every (re)start. ``id`` defaults to the class
    name in lower case. ``inputs`` overrides the class's ``inputs`` (a
    config file may re-wire an actor). ``caught_up`` is set once the backlog
    that existed at start has been handled. ``partition=(k, n)`` makes the
    actor handle only items whose key (``Diaspora-Key``, else the stream
    sequence) hashes to partition ``k`` of ``n``; runtimes sharing a
    ``handle_lock`` handle one message at a time between them (one replica).
    """

    def __init__(
        self,
        actor: ActorFactory,
        fabric: Fabric,
        *,
        id: str | None = None,
        args: Mapping[str, Any] | None = None,
        inputs: Sequence[str] | None = None,
        restart_allowance: float = DEFAULT_RESTART_ALLOWANCE,
        state_dir: str | os.PathLike[str] | None = None,
        partition: tuple[int, int] | None = None,
        handle_lock: anyio.Lock | None = None,
    ) -> None:
        self._factory = actor
        self.fabric = fabric
        name = getattr(actor, "__name__", type(actor).__name__)
        self.id = id or name.lower()
        self._args = dict(args or {})
        cls = actor if isinstance(actor, type) else None
        self._inputs_override = (
            tuple(check_subject(s, where=f"actor {self.id!r}: inputs") for s in inputs)
            if inputs is not None
            else None
        )
        if cls is not None and not issubclass(cls, Actor):
            raise ConfigError(f"actor {self.id!r}: {cls.__qualname__} is not a diaspora Actor")
        self.restart_allowance = restart_allowance
        if partition is not None and not 0 <= partition[0] < partition[1]:
            raise ConfigError(
                f"actor {self.id!r}: partition {partition!r} is not (k, n), 0 <= k < n"
            )
        #: (k, n): handle only items whose key falls in partition k of n (keyed scale-out)
        self.partition = partition
        #: one replica's partitions handle one message at a time (a reusable no-op otherwise)
        self._handle_guard: contextlib.AbstractAsyncContextManager[Any] = (
            handle_lock if handle_lock is not None else contextlib.nullcontext()
        )
        self.state_dir = Path(
            state_dir
            or os.environ.get("DIASPORA_STATE_DIR")
            or Path.home() / ".local" / "state" / "diaspora"
        )
        self.log: FilteringBoundLogger = get_logger(actor=self.id)
        self.stop_requested = False
        self._stop_event = anyio.Event()
        self.caught_up = anyio.Event()
        self.positions: dict[str, int] = {}
        self.items: dict[str, int] = {}
        self.stats: dict[str, int] = {
            "handled": 0,
            "emitted": 0,
            "skipped_replay": 0,
            "dead_lettered": 0,
            "checkpoints": 0,
            "lost": 0,
            "replayed": 0,
            "reconstructed": 0,
            "skipped": 0,
            "stalls": 0,
            "max_lag": 0,
        }
        #: per input subject, per producer: the last item number handled
        self.seen: dict[str, dict[str, int]] = {}
        #: QoS state of the inputs that have a declared QoS spec
        self.flows: dict[str, InputFlow] = {}
        self.history: HistoryBuffer | None = None
        self.started_at = 0.0
        self.caught_up_after: float | None = None
        self._actor: Actor | None = None
        self._slot: CheckpointSlot | None = None
        self._publisher: OrderedPublisher | None = None
        self._mailbox: Mailbox | None = None
        self._failure: FailureNote | None = None
        self._current: str | None = None  # the input being handled: "<subject>:<seq>"
        self._current_reconstructed = False
        self._out_index = 0
        self._restored = False
        self._gapped: set[str] = set()
        self._last_data: dict[tuple[str, str | None], Any] = {}
        # per input with a reconstructor, per producer ("" for none): the last payload handled
        self._tails: dict[str, dict[str, bytes]] = {}
        self._reconstructors: dict[str, Reconstructor] = {}
        self._gates: dict[str, FlowGate] = {}
        self._stall_fills: dict[str, int] = {}
        self._tg: TaskGroup | None = None
        self._skip_ids: set[str] = set()
        self._ready_outputs: set[str] = set()
        self._since_snapshot = 0
        self._last_snapshot = 0.0
        self._pending: _Snapshot | None = None
        self._serial = 0
        self._written_serial = 0
        self._snapshot_wanted = anyio.Event()
        self._written = anyio.Event()
        self._catchup_target: dict[str, int] = {}
        self._writer_error: BaseException | None = None
        self._faults: deque[FaultOrder] = deque()

    # -- the Runnable contract ---------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the actor to finish the message at hand, checkpoint, and return."""
        self.stop_requested = True
        self._stop_event.set()
        if self._mailbox is not None:
            self._mailbox.interrupt()

    def inject(self, fault: Fault | str, seconds: float | None = None) -> None:
        """Inject a fault at the next message (see :mod:`diaspora.actor.faults`)."""
        kind = Fault(fault)
        self._faults.append(FaultOrder.from_mapping({"fault": kind.value, "seconds": seconds}))
        self.log.info("fault_injected", fault=kind.value, seconds=seconds)

    @property
    def actor(self) -> Actor | None:
        """The running actor instance (``None`` before start)."""
        return self._actor

    @property
    def inputs(self) -> tuple[str, ...]:
        if self._inputs_override is not None:
            return self._inputs_override
        cls = self._factory if isinstance(self._factory, type) else type(self._actor)
        return tuple(getattr(cls, "inputs", ()))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start (restore, ``on_start``), signal ``started``, then run until stopped."""
        actor = self._factory(**self._args)
        if not isinstance(actor, Actor):
            raise ConfigError(f"actor {self.id!r}: factory returned {actor!r}, not an Actor")
        actor._diaspora = self
        self._actor = actor
        self.started_at = time.monotonic()
        slot = self._slot = await CheckpointSlot.claim(self.fabric, self.id)
        checkpoint = slot.current
        if checkpoint is not None:
            actor.restore(checkpoint.state)
            self.positions = dict(checkpoint.positions)
            self.items = dict(checkpoint.items)
            self.seen = {subject: dict(m) for subject, m in checkpoint.seen.items()}
            self._tails = {subject: dict(m) for subject, m in checkpoint.tails.items()}
            self._restored = True
        inputs = self.inputs
        await self._load_qos(inputs)
        await self._prepare_streams(actor, inputs)
        starts = await self._start_positions(inputs)
        if checkpoint is None and inputs:
            # a first checkpoint at once: a restart then knows where this actor started,
            # so items the stream drops meanwhile are a gap to recover, not a silent loss
            await slot.save(positions=self.positions, state=actor.snapshot())
        self._failure = await slot.failure()
        if checkpoint is not None:
            await self._scan_outputs_if_window_passed(checkpoint)
        await actor.on_start()
        await self._emit_event(
            "started", positions=dict(self.positions), epoch=slot.epoch, pid=os.getpid()
        )
        error: Exception | None = None
        if actor.history is not None:
            self.history = actor.history.open(
                self.state_dir / "history" / kv_key(self.id), name=self.id
            )
        try:
            async with (
                OrderedPublisher(self.fabric, name=self.id) as publisher,
                anyio.create_task_group() as tg,
            ):
                self._publisher = publisher
                self._tg = tg
                tg.start_soon(self._checkpoint_writer)
                if self.history is not None:
                    await tg.start(HistoryServer(self.fabric, self.id, self.history).run)
                for subject in list(self._ready_outputs):
                    await self._gate_output(subject)
                if self.fabric.faults:
                    tg.start_soon(self._serve_faults)
                self._last_snapshot = time.monotonic()
                if inputs:
                    mailbox = self._mailbox = Mailbox(
                        self.fabric,
                        self.id,
                        starts,
                        batch=actor.batch_size,
                        max_in_flight=max(
                            actor.max_in_flight, actor.batch_size * _CATCHUP_BATCH_FACTOR
                        ),
                        max_bytes=actor.max_in_flight_bytes,
                    )
                    await tg.start(mailbox.run)
                    tg.start_soon(self._lag_reporter)
                task_status.started()
                try:
                    if inputs:
                        await self._consume(actor)
                    else:
                        self.caught_up.set()
                        await self._produce(actor)
                    await self._final_checkpoint()
                except Exception as exc:
                    error = exc
                tg.cancel_scope.cancel()
        finally:
            self._publisher = None
            self._mailbox = None
            self._tg = None
            if self.history is not None:
                self.history.close()
                self.history = None
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                try:
                    await actor.on_stop()
                except Exception as exc:
                    self.log.warning("on_stop_failed", error=repr(exc))
        if error is None:
            await self._emit_event("stopped", positions=dict(self.positions), **self.stats)
            return
        if isinstance(error, ActorCrashed):
            raise error
        if isinstance(error, FencedOut):
            await self._emit_event("fenced", reason=str(error))
            raise error
        await self._emit_event("crashed", reason=repr(error))
        raise ActorCrashed(self.id, error) from error

    # -- start-up ----------------------------------------------------------------------

    async def _prepare_streams(self, actor: Actor, inputs: tuple[str, ...]) -> None:
        for subject in inputs:
            await self.fabric.require_stream(subject)
        for subject in type(actor).outputs:
            await self._ensure_output(subject)

    async def _ensure_output(self, subject: str) -> None:
        check_subject(subject, where=f"actor {self.id!r}: emit subject")
        actor = self._actor
        assert actor is not None
        window = required_window(actor.checkpoint_interval, self.restart_allowance)
        await self.fabric.require_stream(subject, min_duplicate_window=window)
        self._ready_outputs.add(subject)
        if self._tg is not None:
            await self._gate_output(subject)

    async def _gate_output(self, subject: str) -> None:
        """Producers of a ``block`` stream wait for its slowest consumer (see FlowGate)."""
        if subject in self._gates:
            return
        spec = await lookup_qos(self.fabric, subject)
        if spec is None or spec.policy.kind is not Policy.BLOCK:
            return
        bound = spec.max_lag_items
        if bound is None and spec.max_lag_seconds is not None and spec.rate is not None:
            bound = max(1, int(spec.max_lag_seconds * spec.rate))
        if bound is None:
            self.log.debug("block_without_bound", subject=subject)
            return
        gate = self._gates[subject] = FlowGate(self.fabric, subject, bound)
        assert self._tg is not None
        await self._tg.start(gate.run)

    async def _load_qos(self, inputs: tuple[str, ...]) -> None:
        """Read the declared QoS of every input; load reconstructors now (fail early)."""
        for subject in inputs:
            spec = await lookup_qos(self.fabric, subject)
            if spec is None:
                continue
            self.flows[subject] = InputFlow(subject, spec)
            reconstructor = spec.make_reconstructor()
            if reconstructor is not None:
                self._reconstructors[subject] = reconstructor

    async def _start_positions(self, inputs: tuple[str, ...]) -> dict[str, int]:
        """First sequence to consume per input, and the backlog to catch up on."""
        starts: dict[str, int] = {}
        backlog = 0
        for subject in inputs:
            info = await self.fabric.js.stream_info(stream_name(subject))
            last = info.state.last_seq
            position = self.positions.get(subject)
            if position is None:
                # never consumed: start at the oldest item the stream still has
                position = max(0, info.state.first_seq - 1)
                self.positions[subject] = position
            starts[subject] = position + 1
            self._catchup_target[subject] = last
            backlog += max(0, last - position)
        if backlog == 0:
            self._mark_caught_up(0)
        else:
            self.log.info("catching_up", backlog=backlog, positions=dict(self.positions))
            await self._emit_event("lag", lag=backlog, catching_up=True)
        return starts

    async def _scan_outputs_if_window_passed(self, checkpoint: Checkpoint) -> None:
        """After a long outage, learn which outputs were already emitted since the checkpoint.

        JetStream forgets message ids after the duplicate window; if half of it
        has passed since the snapshot, read the ids of this actor's outputs
        made since then (headers only) and skip those on replay.
        """
        age = time.time() - checkpoint.snapshot_at
        for subject in set(checkpoint.out_seqs) | set(checkpoint.items):
            try:
                info = await self.fabric.js.stream_info(stream_name(subject))
            except nats.js.errors.NotFoundError:
                continue
            window = info.config.duplicate_window or 0.0
            if age < window / 2:
                continue
            start = checkpoint.out_seqs.get(subject, 0) + 1
            found = 0
            async for stored in read_stored(
                self.fabric, subject, start_seq=start, headers_only=True
            ):
                if stored.headers.get(H.ACTOR) == self.id:
                    msg_id = stored.headers.get(H.MSG_ID)
                    if msg_id:
                        self._skip_ids.add(msg_id)
                        found += 1
            self.log.info(
                "outputs_scanned",
                subject=subject,
                from_seq=start,
                own_outputs=found,
                checkpoint_age_s=round(age, 1),
                window_s=window,
            )

    # -- consuming ---------------------------------------------------------------------

    async def _consume(self, actor: Actor) -> None:
        mailbox = self._mailbox
        assert mailbox is not None
        batch = actor.batch_size
        every = actor.checkpoint_every
        interval = actor.checkpoint_interval
        tick = self._qos_tick()
        while not self.stop_requested:
            self._raise_writer_error()
            limit = batch if self.caught_up.is_set() else batch * _CATCHUP_BATCH_FACTOR
            if self._since_snapshot:
                wait = max(0.0, interval - (time.monotonic() - self._last_snapshot))
            else:
                wait = interval
            deliveries = await mailbox.take(limit, min(wait, tick))
            for delivery in deliveries:
                if delivery.seq <= self.positions.get(delivery.subject, 0):
                    mailbox.handled(delivery)
                    continue
                await self._deliver(actor, delivery)
                if every is not None and self._since_snapshot >= every:
                    self._snapshot()
                if self.stop_requested:
                    break
            if deliveries:
                await mailbox.ack()
                if not self.caught_up.is_set():
                    self._check_caught_up()
            else:
                await mailbox.ack(force=True)
            if self.flows:
                await self._after_batch(actor)
            if self._since_snapshot and time.monotonic() - self._last_snapshot >= interval:
                self._snapshot()

    def _mine(self, headers: Mapping[str, str], seq: int) -> bool:
        """Whether an item belongs to this runtime's partition (always, if unpartitioned).

        The key is ``Diaspora-Key``, else ``<producer>#<item>``, else the stream sequence.
        """
        if self.partition is None:
            return True
        k, n = self.partition
        key = headers.get(H.KEY)
        if key is None:
            producer, item = headers.get(H.ACTOR), headers.get(H.ITEM)
            key = f"{producer}#{item}" if producer and item else str(seq)
        return partition_of(key, n) == k

    def _qos_tick(self) -> float:
        """How often the consuming loop must look at the inputs' QoS even when idle."""
        tick = math.inf
        for flow in self.flows.values():
            spec = flow.spec
            if spec.stall_deadline is not None:
                tick = min(tick, spec.stall_deadline / 4)
            if spec.fill_stalls and spec.rate:
                tick = min(tick, 1.0 / spec.rate)
        return max(tick, 0.005) if self.flows else math.inf

    async def _after_batch(self, actor: Actor) -> None:
        """QoS bookkeeping: positions to producers, mode switches, stalls."""
        nc = self.fabric._nc
        for subject, flow in self.flows.items():
            if nc is not None and nc.is_connected:
                report = position_report(self.id, self.positions.get(subject, 0))
                try:
                    await nc.publish(flow_subject(subject), report)
                except (nats.errors.Error, OSError) as exc:
                    self.log.debug("flow_report_failed", error=repr(exc))
            switch = flow.update_mode()
            if switch is not None:
                kind = "policy_on" if switch.mode is Mode.DEGRADED else "policy_off"
                await self._emit_event(kind, **switch.fields())
            stall = flow.check_stall()
            if stall is True:
                self.stats["stalls"] += 1
                await self._emit_event(
                    "stall", subject=subject, deadline_s=flow.spec.stall_deadline
                )
            elif stall is False:
                await self._emit_event("stall_end", subject=subject)
            if flow.stalled and flow.spec.fill_stalls:
                await self._fill_stall(actor, subject, flow)

    async def _fill_stall(self, actor: Actor, subject: str, flow: InputFlow) -> None:
        """During a stall, hand reconstructed items to ``handle`` at the stream's rate."""
        rate = flow.spec.rate
        reconstructor = self._reconstructors.get(subject)
        if rate is None or reconstructor is None:
            return
        quiet = time.monotonic() - flow.last_arrival - (flow.spec.stall_deadline or 0.0)
        due = int(quiet * rate) - self._stall_fills.get(subject, 0)
        for _ in range(max(0, due)):
            n = self._stall_fills[subject] = self._stall_fills.get(subject, 0) + 1
            before = self._before(subject, None)
            try:
                data = fill_gap(reconstructor, before, None, 1)[0]
            except ReconstructionError as exc:
                self.log.warning("stall_not_filled", subject=subject, error=str(exc))
                return
            await self._handle_synthetic(actor, subject, f"{subject}:stall{n}", data, None, n)

    async def _deliver(self, actor: Actor, delivery: Delivery) -> None:
        mailbox = self._mailbox
        assert mailbox is not None
        subject = delivery.subject
        headers = delivery.headers or {}
        if delivery.gap_from is not None:
            self._gapped.add(subject)
        producer = headers.get(H.ACTOR)
        item = _item_number(headers)
        failure = self._failure
        poisoned = (
            failure is not None
            and failure.subject == subject
            and failure.seq == delivery.seq
            and failure.attempts >= actor.max_attempts
        )
        if poisoned:
            assert failure is not None
            await self._dead_letter(
                delivery,
                f"handle raised {failure.attempts} times: {failure.reason}",
                failure.traceback,
                failure.attempts,
            )
        elif producer is not None and item is not None:
            seen = self.seen.setdefault(subject, {})
            last = seen.get(producer)
            if last is None:
                # a producer not seen before: its earlier items are ours to recover only if
                # the stream lost items while this (restored) actor was away
                last = 0 if (self._restored and subject in self._gapped) else item - 1
            if item > last + 1:
                await self._recover_gap(actor, subject, producer, last + 1, item - 1, delivery)
            if item <= seen.get(producer, last):
                self.stats["skipped"] += 1  # already handled, replayed from history
            elif self._mine(headers, delivery.seq):
                await self._decode_and_handle(actor, delivery, producer)
            if item > seen.get(producer, 0):
                seen[producer] = item
        else:
            if delivery.gap_from is not None:
                count = delivery.seq - delivery.gap_from
                await self._lost(subject, None, delivery.gap_from, delivery.seq - 1, count)
                if self.partition is None:
                    await self._reconstruct(
                        actor, subject, None, delivery, count, delivery.gap_from
                    )
            if self._mine(headers, delivery.seq):
                await self._decode_and_handle(actor, delivery, producer)
        self.positions[subject] = delivery.seq
        self._since_snapshot += 1
        mailbox.handled(delivery)
        if failure is not None and failure.subject == subject and delivery.seq >= failure.seq:
            self._failure = None
            await self._clear_failure()

    async def _decode_and_handle(
        self, actor: Actor, delivery: Delivery, producer: str | None
    ) -> None:
        message = await self._decode(delivery)
        if message is None:
            return
        subject = delivery.subject
        flow = self.flows.get(subject)
        if flow is not None:
            now = time.time()
            emitted = _float(message.headers.get(H.EMITTED_AT))
            flow.observe(
                seq=delivery.seq,
                head=max(delivery.seq + delivery.pending, self._mailbox_head(subject)),
                age=now - delivery.timestamp if delivery.timestamp else None,
                latency=now - emitted if emitted is not None else None,
            )
            if flow.lag.lag > self.stats["max_lag"]:
                self.stats["max_lag"] = flow.lag.lag
            switch = flow.update_mode()
            if switch is not None:
                kind = "policy_on" if switch.mode is Mode.DEGRADED else "policy_off"
                await self._emit_event(kind, **switch.fields())
            admission = flow.admit(delivery.seq, message.data)
            if admission.action is not Action.HANDLE:
                if admission.action is Action.SKIP:
                    self.stats["skipped"] += 1
                self._last_data[(subject, producer)] = message.data
                return
            if admission.count > 1:
                message = replace(
                    message,
                    data=admission.data,
                    headers={**message.headers, H.AGGREGATED: str(admission.count)},
                )
        started = time.perf_counter()
        await self._handle(actor, f"{subject}:{delivery.seq}", message, delivery)
        if flow is not None:
            flow.handled(delivery.seq, time.perf_counter() - started)
        self._last_data[(subject, producer)] = message.data
        if producer is not None:
            self._last_data[(subject, None)] = message.data
        if subject in self._reconstructors and len(message.payload) <= _TAIL_LIMIT:
            self._tails.setdefault(subject, {})[producer or ""] = message.payload

    async def _recover_gap(
        self,
        actor: Actor,
        subject: str,
        producer: str,
        first: int,
        last: int,
        delivery: Delivery,
    ) -> None:
        """Items ``first..last`` of ``producer`` never reached us: replay, else reconstruct."""
        seen = self.seen.setdefault(subject, {})
        await self._emit_event("gap", subject=subject, producer=producer, first=first, last=last)
        missing: list[Gap] = []
        try:
            async with contextlib.aclosing(
                fetch_history(self.fabric, producer, subject, first, last)
            ) as replay:
                async for entry in replay:
                    if isinstance(entry, Gap):
                        missing.append(entry)
                        continue
                    headers = {**entry.headers, H.ACTOR: producer, H.ITEM: str(entry.item)}
                    mine = self._mine(headers, 0)
                    data = (
                        self._decode_replayed(entry.payload, subject, producer, entry.item)
                        if mine
                        else _UNDECODABLE
                    )
                    if data is not _UNDECODABLE:
                        message = Message(
                            data=data,
                            subject=subject,
                            seq=0,
                            headers=headers,
                            payload=entry.payload,
                            replayed=True,
                        )
                        source = f"{subject}:{producer}#{entry.item}"
                        await self._handle(actor, source, message, delivery)
                        self._last_data[(subject, producer)] = data
                    seen[producer] = entry.item
                    self.stats["replayed"] += 1
                    self._since_snapshot += 1
        except ReplayError as exc:
            self.log.warning("replay_failed", subject=subject, producer=producer, error=str(exc))
            missing = [Gap(subject, seen.get(producer, first - 1) + 1, last)]
        for gap in missing:
            if gap.first > gap.last:
                continue
            await self._lost(subject, producer, gap.first, gap.last, gap.count)
            if self.partition is None:  # lost items have no key: no partition can claim them
                await self._reconstruct(actor, subject, producer, delivery, gap.count, gap.first)
            seen[producer] = max(seen.get(producer, 0), gap.last)

    def _decode_replayed(self, payload: bytes, subject: str, producer: str, item: int) -> Any:
        try:
            return codec.decode(payload)
        except DecodeError as exc:
            self.log.warning(
                "replayed_item_undecodable",
                subject=subject,
                producer=producer,
                item=item,
                error=str(exc),
            )
            return _UNDECODABLE

    async def _lost(
        self, subject: str, producer: str | None, first: int, last: int, count: int
    ) -> None:
        self.stats["lost"] += count
        await self._emit_event(
            "lost",
            subject=subject,
            producer=producer,
            first=first,
            last=last,
            count=count,
            by="item" if producer is not None else "seq",
        )

    async def _reconstruct(
        self,
        actor: Actor,
        subject: str,
        producer: str | None,
        delivery: Delivery,
        count: int,
        first: int,
    ) -> None:
        """Hand reconstructed stand-ins for ``count`` lost items to ``handle``, if configured."""
        reconstructor = self._reconstructors.get(subject)
        if reconstructor is None or count <= 0:
            return
        before = self._before(subject, producer)
        try:
            after = codec.decode(delivery.payload)
        except DecodeError:
            after = None
        try:
            items = fill_gap(reconstructor, before, after, count)
        except ReconstructionError as exc:
            self.log.warning("not_reconstructed", subject=subject, error=str(exc))
            return
        for offset, data in enumerate(items):
            number = first + offset
            source = f"{subject}:{producer or ''}#{number}"
            await self._handle_synthetic(actor, subject, source, data, producer, number)
        await self._emit_event(
            "reconstructed", subject=subject, producer=producer, first=first, count=count
        )

    def _mailbox_head(self, subject: str) -> int:
        mailbox = self._mailbox
        return mailbox.head(subject) if mailbox is not None else 0

    def _before(self, subject: str, producer: str | None) -> Any:
        """The last item handled from ``producer`` (kept in memory, or in the checkpoint)."""
        key = (subject, producer)
        if key in self._last_data:
            return self._last_data[key]
        payload = self._tails.get(subject, {}).get(producer or "")
        if payload is None:
            return None
        try:
            return codec.decode(payload)
        except DecodeError:
            return None

    async def _handle_synthetic(
        self,
        actor: Actor,
        subject: str,
        source: str,
        data: Any,
        producer: str | None,
        number: int,
    ) -> None:
        headers = {H.RECONSTRUCTED: "1"}
        if producer is not None:
            headers[H.ACTOR] = producer
            headers[H.ITEM] = str(number)
        message = Message(data=data, subject=subject, seq=0, headers=headers, reconstructed=True)
        await self._handle(actor, source, message, None)
        self._last_data[(subject, producer)] = data
        self.stats["reconstructed"] += 1
        self._since_snapshot += 1

    async def _decode(self, delivery: Delivery) -> Message | None:
        headers = delivery.headers or {}
        payload = delivery.payload
        try:
            if H.BLOB in headers:
                payload = await self._blob(delivery)
            data = codec.decode(payload)
        except DecodeError as exc:
            await self._dead_letter(delivery, f"undecodable payload: {exc}", "", 0)
            return None
        return Message(
            data=data,
            subject=delivery.subject,
            seq=delivery.seq,
            headers=headers,
            timestamp=delivery.timestamp,
            reconstructed=headers.get(H.RECONSTRUCTED) == "1",
            payload=payload,
        )

    async def _blob(self, delivery: Delivery) -> bytes:
        ref = (delivery.headers or {})[H.BLOB]
        bucket, _, name = ref.partition("/")
        try:
            obs = await self.fabric.ensure_object_store(bucket)
            result = await obs.get(name)
        except Exception as exc:
            raise DecodeError(f"blob {ref!r} cannot be read: {exc!r}") from exc
        if result.data is None:
            raise DecodeError(f"blob {ref!r} is empty")
        return result.data

    async def _handle(
        self, actor: Actor, source: str, message: Message, delivery: Delivery | None
    ) -> None:
        """Call ``handle``; ``source`` names the input in output ids (``<subject>:<seq>``).

        A failure is recorded against ``delivery`` (the stream message being
        processed) for poison detection, then the actor crashes.
        """
        self._current = source
        self._current_reconstructed = message.reconstructed
        self._out_index = 0
        deadline = actor.handle_deadline
        if self._faults:
            await self._apply_fault(source, deadline)
        try:
            async with self._handle_guard:
                if deadline is None:
                    await actor.handle(message)
                else:
                    with anyio.move_on_after(deadline) as scope:
                        await actor.handle(message)
                    if scope.cancelled_caught:
                        raise HandlerHung(
                            f"actor {self.id!r}: handle of {source} ran past its deadline of "
                            f"{deadline}s"
                        )
        except Exception as exc:
            if delivery is not None:
                await self._note_failure(delivery, exc)
            raise ActorCrashed(self.id, exc) from exc
        finally:
            self._current = None
        self.stats["handled"] += 1

    async def _apply_fault(self, where: str, deadline: float | None) -> None:
        """Carry out the oldest injected fault (not recorded as a handle failure)."""
        order = self._faults.popleft()
        self.log.warning("fault_applied", fault=order.fault.value, at=where)
        if order.fault is Fault.CRASH:
            exc: Exception = InjectedFault(f"actor {self.id!r}: injected crash at {where}")
            await self._emit_event("crashed", reason=repr(exc), injected=True)
            raise ActorCrashed(self.id, exc) from exc
        if order.fault is Fault.FREEZE:
            time.sleep(order.seconds or 0.0)  # noqa: ASYNC251 - blocking the loop is the fault
            return
        with anyio.move_on_after(deadline) as scope:
            await anyio.sleep(math.inf if order.seconds is None else order.seconds)
        if scope.cancelled_caught:
            exc = HandlerHung(f"actor {self.id!r}: injected hang at {where} ran past {deadline}s")
            await self._emit_event("crashed", reason=repr(exc), injected=True)
            raise ActorCrashed(self.id, exc) from exc

    async def _serve_faults(self) -> None:
        """Accept fault orders on the actor's control subject (fault injection enabled)."""

        async def on_order(msg: Any) -> None:
            try:
                order = FaultOrder.from_mapping(codec.decode(msg.data))
            except (DecodeError, ConfigError) as exc:
                self.log.warning("fault_order_refused", error=str(exc))
                if msg.reply:
                    await self.fabric.nc.publish(msg.reply, f"error: {exc}".encode())
                return
            self._faults.append(order)
            self.log.info("fault_injected", fault=order.fault.value, seconds=order.seconds)
            if msg.reply:
                await self.fabric.nc.publish(msg.reply, b"ok")

        async with self.fabric.subscription(fault_subject(self.id), on_order):
            await anyio.sleep_forever()

    async def _note_failure(self, delivery: Delivery, exc: Exception) -> None:
        previous = self._failure
        same = previous is not None and (previous.subject, previous.seq) == (
            delivery.subject,
            delivery.seq,
        )
        attempts = previous.attempts + 1 if same and previous is not None else 1
        reason = f"{type(exc).__name__}: {exc}"
        note = FailureNote(
            subject=delivery.subject,
            seq=delivery.seq,
            attempts=attempts,
            reason=reason,
            traceback="".join(traceback.format_exception(exc)),
        )
        self._failure = note
        slot = self._slot
        assert slot is not None
        with anyio.CancelScope(shield=True), anyio.move_on_after(5) as scope:
            try:
                await slot.note_failure(note)
            except Exception as write_error:
                self.log.warning("failure_not_recorded", error=repr(write_error))
        if scope.cancelled_caught:
            self.log.warning("failure_not_recorded", error="timeout")
        max_attempts = self._actor.max_attempts if self._actor else 1
        await self._emit_event(
            "crashed",
            reason=reason,
            subject=delivery.subject,
            seq=delivery.seq,
            attempt=attempts,
            poison=attempts >= max_attempts,
        )

    async def _clear_failure(self) -> None:
        slot = self._slot
        if slot is None:
            return
        try:
            await slot.clear_failure()
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            self.log.debug("failure_not_cleared", error=repr(exc))

    async def _dead_letter(
        self, delivery: Delivery, reason: str, trace: str, attempts: int
    ) -> None:
        publisher = self._publisher
        assert publisher is not None
        record = {
            "actor": self.id,
            "subject": delivery.subject,
            "seq": delivery.seq,
            "reason": reason,
            "traceback": trace,
            "attempts": attempts,
            "headers": dict(delivery.headers or {}),
            "payload": delivery.payload,
            "time": time.time(),
        }
        headers = {
            H.ACTOR: self.id,
            H.DEAD_REASON: " ".join(reason.split())[:400],
            H.DEAD_SUBJECT: delivery.subject,
            H.DEAD_SEQ: str(delivery.seq),
        }
        await publisher.publish(
            dlq_subject(self.id),
            codec.encode(record),
            headers=headers,
            msg_id=f"{self.id}:dlq:{delivery.subject}:{delivery.seq}",
        )
        self.stats["dead_lettered"] += 1
        await self._emit_event(
            "dead_letter", subject=delivery.subject, seq=delivery.seq, reason=reason
        )

    async def _on_gap(self, subject: str, first: int, last: int) -> None:
        self.stats["lost"] += last - first + 1
        await self._emit_event("lost", subject=subject, first=first, last=last)

    def _check_caught_up(self) -> None:
        if all(self.positions.get(s, 0) >= t for s, t in self._catchup_target.items()):
            self._mark_caught_up(self.stats["handled"])

    def _mark_caught_up(self, replayed: int) -> None:
        if self.caught_up.is_set():
            return
        self.caught_up_after = time.monotonic() - self.started_at
        self.caught_up.set()
        if replayed:
            duration = self.caught_up_after
            self.log.info(
                "caught_up",
                replayed=replayed,
                duration_s=round(duration, 3),
                rate=round(replayed / duration, 1) if duration > 0 else None,
            )

    async def _lag_reporter(self) -> None:
        mailbox = self._mailbox
        assert mailbox is not None
        announced = self.caught_up.is_set()
        while True:
            await anyio.sleep(_LAG_EVERY_S)
            if self.caught_up.is_set():
                if not announced:
                    announced = True
                    await self._emit_event(
                        "caught_up",
                        replayed=self.stats["handled"],
                        duration_s=self.caught_up_after,
                    )
                continue
            lag = sum(
                max(0, target - self.positions.get(subject, 0))
                for subject, target in self._catchup_target.items()
            )
            await self._emit_event("lag", lag=lag, catching_up=True)

    def lag(self) -> int:
        """Messages of the inputs not yet handled, as far as the mailbox knows."""
        mailbox = self._mailbox
        if mailbox is None:
            return 0
        return sum(mailbox.lag(s, self.positions.get(s, 0)) for s in mailbox.subjects)

    # -- sources -----------------------------------------------------------------------

    async def _produce(self, actor: Actor) -> None:
        with anyio.CancelScope() as scope:

            async def cancel_on_stop() -> None:
                await self._stop_event.wait()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_on_stop)
                await actor.produce()
                tg.cancel_scope.cancel()

    # -- emitting ----------------------------------------------------------------------

    async def emit(
        self,
        subject: str,
        data: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        item: int | None = None,
    ) -> None:
        """Publish one output (see :meth:`diaspora.Actor.emit`)."""
        publisher = self._publisher
        if publisher is None:
            raise RuntimeError(f"actor {self.id!r}: emit() outside the running actor")
        if subject not in self._ready_outputs:
            await self._ensure_output(subject)
        payload = codec.encode(data)
        number = item if item is not None else self.items.get(subject, 0) + 1
        if number > self.items.get(subject, 0):
            self.items[subject] = number
        current = self._current
        if current is None and self._faults:
            await self._apply_fault(f"{subject}#{number}", None)
        hdrs = dict(headers) if headers else {}
        if current is not None:
            msg_id = f"{self.id}:{current}:{self._out_index}"
            self._out_index += 1
            hdrs[H.SOURCE] = current
            if self._current_reconstructed:
                hdrs[H.RECONSTRUCTED] = "1"
        else:
            msg_id = f"{self.id}:{subject}:{number}"
        hdrs[H.ACTOR] = self.id
        hdrs[H.ITEM] = str(number)
        hdrs[H.EMITTED_AT] = repr(time.time())
        if key is not None:
            hdrs[H.KEY] = key
        if self._skip_ids and msg_id in self._skip_ids:
            self._skip_ids.discard(msg_id)
            self.stats["skipped_replay"] += 1
        else:
            gate = self._gates.get(subject)
            if gate is not None:
                await gate.wait(publisher.last_seq.get(subject, 0) + publisher.pending)
            await publisher.publish(subject, payload, headers=hdrs, msg_id=msg_id)
            self.stats["emitted"] += 1
        if self.history is not None:
            self.history.add(subject, number, payload, hdrs)
        if current is None:
            # sources are checkpointed at emit boundaries
            self._since_snapshot += 1
            actor = self._actor
            assert actor is not None
            every = actor.checkpoint_every
            if (every is not None and self._since_snapshot >= every) or (
                time.monotonic() - self._last_snapshot >= actor.checkpoint_interval
            ):
                self._snapshot()

    # -- checkpoints -------------------------------------------------------------------

    def _snapshot(self) -> None:
        """Capture state and positions now (between messages); the writer stores them."""
        actor = self._actor
        publisher = self._publisher
        assert actor is not None
        assert publisher is not None
        state = actor.snapshot()
        try:
            blob = codec.encode(state)
        except codec.EncodeError as exc:
            raise CheckpointError(
                f"actor {self.id!r}: snapshot() returned something the codec cannot store: {exc}"
            ) from exc
        self._serial += 1
        self._pending = _Snapshot(
            serial=self._serial,
            positions=dict(self.positions),
            items=dict(self.items),
            out_seqs=dict(publisher.last_seq),
            seen={subject: dict(m) for subject, m in self.seen.items()},
            tails={subject: dict(m) for subject, m in self._tails.items()},
            upto=publisher.enqueued,
            blob=blob,
            at=time.time(),
        )
        self._since_snapshot = 0
        self._last_snapshot = time.monotonic()
        self._snapshot_wanted.set()

    async def _checkpoint_writer(self) -> None:
        try:
            await self._write_checkpoints()
        except Exception as exc:
            # surfaced to the consuming loop, which crashes the actor with it
            self._writer_error = exc
            self._stop_event.set()
            self._written.set()
            if self._mailbox is not None:
                self._mailbox.interrupt()

    async def _write_checkpoints(self) -> None:
        slot = self._slot
        publisher = self._publisher
        assert slot is not None
        assert publisher is not None
        while True:
            await self._snapshot_wanted.wait()
            self._snapshot_wanted = anyio.Event()
            attempt = 0
            while (snap := self._pending) is not None:
                await publisher.flush(upto=snap.upto)
                try:
                    record = await slot.save(
                        positions=snap.positions,
                        items=snap.items,
                        out_seqs=snap.out_seqs,
                        seen=snap.seen,
                        tails=snap.tails,
                        snapshot_at=snap.at,
                        encoded_state=snap.blob,
                    )
                except FencedOut:
                    raise
                except (CheckpointError, FabricUnavailable, nats.errors.Error, OSError) as exc:
                    attempt += 1
                    delay = min(2.0, 0.05 * 2**attempt)
                    self.log.warning("checkpoint_retry", attempt=attempt, error=repr(exc))
                    await anyio.sleep(delay)
                    continue
                attempt = 0
                if self._pending is snap:
                    self._pending = None
                self._written_serial = snap.serial
                self.stats["checkpoints"] += 1
                self._written.set()
                self._written = anyio.Event()
                self.log.debug("checkpointed", version=record.version, positions=snap.positions)
                await self._emit_event(
                    "checkpointed", version=record.version, positions=snap.positions
                )

    def _raise_writer_error(self) -> None:
        if self._writer_error is not None:
            raise self._writer_error

    async def checkpoint_now(self) -> None:
        """Snapshot now and wait until that checkpoint is written."""
        self._snapshot()
        await self._wait_written(self._serial)

    async def _wait_written(self, serial: int) -> None:
        while self._written_serial < serial:
            self._raise_writer_error()
            await self._written.wait()
        self._raise_writer_error()

    async def _final_checkpoint(self) -> None:
        self._raise_writer_error()
        if self._mailbox is not None:
            await self._mailbox.ack(force=True)
        if self._actor is not None and (self._since_snapshot or self._pending is not None):
            if self.inputs:
                self._snapshot()
            with anyio.move_on_after(30) as scope:
                await self._wait_written(self._serial)
            if scope.cancelled_caught:
                self.log.warning("final_checkpoint_timeout", serial=self._serial)
        publisher = self._publisher
        if publisher is not None:
            with anyio.move_on_after(30):
                await publisher.flush()

    # -- events ------------------------------------------------------------------------

    async def _emit_event(self, kind: str, **fields: Any) -> None:
        await self.fabric.emit_event("actor", self.id, kind, **fields)


async def run_actor(
    actor: ActorFactory,
    fabric: Fabric,
    *,
    id: str | None = None,
    args: Mapping[str, Any] | None = None,
    inputs: Sequence[str] | None = None,
) -> ActorRuntime:
    """Run one actor until it stops (``request_stop``/cancellation) or crashes.

    Raises :class:`~diaspora.errors.ActorCrashed` when ``handle`` raises; run
    it again (or under a supervisor) to resume from the last checkpoint.
    Returns the runtime (positions and stats) after a normal stop.
    """
    runtime = ActorRuntime(actor, fabric, id=id, args=args, inputs=inputs)
    await runtime.run()
    return runtime


_UNDECODABLE: Final = object()
#: Payloads up to this size are kept in checkpoints as a reconstructor's left neighbour.
_TAIL_LIMIT: Final = 64 * 1024


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (CRC-32, stable across processes).

    >>> partition_of("sensor-7", 4)
    2
    """
    return zlib.crc32(key.encode()) % partitions


def _item_number(headers: Mapping[str, str]) -> int | None:
    value = headers.get(H.ITEM)
    return int(value) if value is not None and value.isdigit() else None


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
