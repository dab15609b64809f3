"""Running one actor: a small driver over the stages of :mod:`diaspora.stage`.

:class:`ActorRuntime` is what a supervisor starts (a
:class:`~diaspora.supervision.Runnable`); :func:`run_actor` runs one on its
own. The driver restores the checkpoint, builds the pipeline
(:mod:`diaspora.actor._pipeline`), then loops: take a batch from the
mailbox, skip what the checkpoint already includes, drive each message
through the inbound stages, advance its position, snapshot when due. The
semantic contract (``DESIGN.md``, ``docs/actors.md``):

- **Positions live in the checkpoint.** A (re)start restores the newest
  checkpoint and consumes each input from its position + 1.
- **Checkpoints do not stall ``handle``.** The state is snapshotted between
  two messages and written in the background, after every output emitted
  before the snapshot is acknowledged.
- **Effectively-once outputs.** Every emit carries ``Nats-Msg-Id =
  <actor>:<input subject>:<input seq>:<output index>``.

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
...         print(runtime.positions, runtime.stats.emitted)
>>> anyio.run(demo)
{'xs': 3} 3
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus

from diaspora.actor._actor import Actor
from diaspora.actor._catchup import CatchUp
from diaspora.actor._checkpoint import CheckpointSlot, kv_key
from diaspora.actor._checkpointing import Checkpointer
from diaspora.actor._claiming import Status, claim_slot
from diaspora.actor._emit import required_window
from diaspora.actor._exits import report_exit, run_source
from diaspora.actor._mailbox import Mailbox, input_filters
from diaspora.actor._pipeline import Pipeline, Step, build_pipeline, link
from diaspora.actor._poison import PoisonPolicy
from diaspora.clock import Clock, SystemClock
from diaspora.errors import ConfigError
from diaspora.events import Event, EventSink, Started
from diaspora.fabric import Delivery, Fabric
from diaspora.fabric._naming import check_input
from diaspora.fabric._partitions import partitions_in
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.log import FilteringBoundLogger, get_logger
from diaspora.stage import InputItem, Next, RuntimeStats, Stage, StageFactory

__all__ = [
    "DEFAULT_RESTART_ALLOWANCE",
    "ActorFactory",
    "ActorRuntime",
    "flush_outputs",
    "run_actor",
    "stop_requested",
]

#: Seconds a crashed actor may take to be back and replaying before outputs
#: re-emitted during replay might fall outside the duplicate window.
DEFAULT_RESTART_ALLOWANCE: Final = 60.0
_CATCHUP_BATCH_FACTOR: Final = 4
_STATE_HOME: Final = Path.home() / ".local" / "state" / "diaspora"

ActorFactory = type[Actor] | Callable[..., Actor]


class ActorRuntime:
    """Runs one actor instance until stopped, crashed or cancelled (a supervisor ``Runnable``).

    ``actor`` is an :class:`Actor` subclass or a factory called with ``args``
    on every (re)start; ``id`` defaults to the class name in lower case;
    ``inputs`` overrides the class's. ``partition=(k, n)`` handles only the
    items whose key hashes to partition ``k`` of ``n``; runtimes sharing a
    ``handle_lock`` handle one message at a time between them; ``poison``
    overrides the class's ``max_attempts``/``on_poison``. ``stages``
    are extra stage factories (see :mod:`diaspora.stage`); ``events`` is
    where events go (default: the fabric); ``clock`` is injectable.
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
        poison: PoisonPolicy | None = None,
        stages: Sequence[StageFactory] = (),
        events: EventSink | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._factory = actor
        self.fabric = fabric
        self.id = id or getattr(actor, "__name__", type(actor).__name__).lower()
        self._args = dict(args or {})
        if isinstance(actor, type) and not issubclass(actor, Actor):
            raise ConfigError(f"actor {self.id!r}: {actor.__qualname__} is not a diaspora Actor")
        where = f"actor {self.id!r}: inputs"
        self._inputs = (
            None if inputs is None else tuple(check_input(s, where=where) for s in inputs)
        )
        if partition is not None and not 0 <= partition[0] < partition[1]:
            raise ConfigError(
                f"actor {self.id!r}: partition {partition!r} is not (k, n), 0 <= k < n"
            )
        self.partition = partition
        self.restart_allowance = restart_allowance
        self._guard: contextlib.AbstractAsyncContextManager[Any] = (
            handle_lock if handle_lock is not None else contextlib.nullcontext()
        )
        self._stage_factories, self._poison_policy = tuple(stages), poison
        self._events: EventSink = events if events is not None else fabric
        self.clock: Clock = clock or SystemClock()
        self.state_dir = Path(state_dir or os.environ.get("DIASPORA_STATE_DIR") or _STATE_HOME)
        self.log: FilteringBoundLogger = get_logger(actor=self.id)
        self.stats = RuntimeStats()
        self.positions: dict[str, int] = {}
        self.stop_requested = False
        #: True from ``run`` until the start has ended and its stages are closed
        self.running = False
        self._stop_event = anyio.Event()
        self._catchup = CatchUp(self)
        self.restored = False
        self._actor: Actor | None = None
        self._tg: TaskGroup | None = None
        self._mailbox: Mailbox | None = None
        self._pipeline: Pipeline | None = None
        self._cp: Checkpointer | None = None
        self._chain: tuple[Step, Next] | None = None
        #: the stages of the current start (extra ones included), in pipeline order
        self.stages: list[Stage] = []

    @property
    def actor(self) -> Actor | None:
        """The running actor instance (``None`` before start)."""
        return self._actor

    @property
    def max_attempts(self) -> int:
        return self._pipeline.poison.max_attempts if self._pipeline is not None else 1

    @property
    def handle_deadline(self) -> float | None:
        return self._actor.handle_deadline if self._actor is not None else None

    @property
    def inputs(self) -> tuple[str, ...]:
        cls = self._factory if isinstance(self._factory, type) else type(self._actor)
        return self._inputs if self._inputs is not None else tuple(getattr(cls, "inputs", ()))

    @property
    def task_group(self) -> TaskGroup:
        if self._tg is None:
            raise RuntimeError(f"actor {self.id!r}: no task group before the runtime runs")
        return self._tg

    @property
    def caught_up(self) -> anyio.Event:
        """Set once the backlog that existed at start has been handled."""
        return self._catchup.event

    @property
    def caught_up_after(self) -> float | None:
        """Seconds from start to caught up (``None`` until then)."""
        return self._catchup.after

    @property
    def outputs_acked(self) -> int:
        """Outputs of this start that JetStream has acknowledged (stored)."""
        pipe = self._pipeline
        return pipe.emitter.publisher.acked if pipe and pipe.emitter.publisher else 0

    async def event(self, event: Event) -> None:
        await self._events.emit(event)

    def progressed(self, count: int = 1) -> None:
        if self._cp is not None:
            self._cp.since += count

    async def dead_letter(self, item: InputItem, reason: str, trace: str, attempts: int) -> None:
        await self._pipeline.poison.dead_letter(item, reason, trace, attempts)  # type: ignore[union-attr]

    async def publish_ordered(
        self, subject: str, payload: bytes, headers: Mapping[str, str], msg_id: str
    ) -> None:
        await self._publisher().publish(subject, payload, headers=dict(headers), msg_id=msg_id)

    def input_head(self, subject: str) -> int:
        heard = self._mailbox.head(subject) if self._mailbox is not None else 0
        return max(heard, self._catchup.targets.get(subject, 0))  # the backlog at start too

    async def submit(self, item: InputItem) -> None:
        """Drive an item a stage made through the whole inbound chain."""
        assert self._chain is not None, "stages submit only while the runtime runs"
        step, rest = self._chain
        await step(item, rest)

    def _publisher(self) -> OrderedPublisher:
        publisher = self._pipeline.emitter.publisher if self._pipeline else None
        if publisher is None:
            raise RuntimeError(f"actor {self.id!r}: emit() outside the running actor")
        return publisher

    # the Runnable contract

    def request_stop(self) -> None:
        """Ask the actor to finish the message at hand, checkpoint, and return."""
        self.stop_requested = True
        self._stop_event.set()
        if self._mailbox is not None:
            self._mailbox.interrupt()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start (restore, ``on_start``), signal ``started``, then run until stopped."""
        actor = self._factory(**self._args)
        if not isinstance(actor, Actor):
            raise ConfigError(f"actor {self.id!r}: factory returned {actor!r}, not an Actor")
        actor._bound_runtime = self
        self._actor = actor
        extra = [factory() for factory in self._stage_factories]
        slot = await claim_slot(
            self, extra, status := Status(task_status), actor.checkpoint_storage
        )
        inputs = self.inputs
        pipe = self._pipeline = await build_pipeline(
            self,
            actor,
            slot,
            inputs=inputs,
            partition=self.partition,
            guard=self._guard,
            extra=extra,
            ensure_output=self._ensure_output,
            publisher_of=self._publisher,
            poison_policy=self._poison_policy,
        )
        pipe.emitter.source_emitted = self._source_emitted
        actor._bound_emit, actor._bound_leave_out = pipe.emitter.emit, pipe.emitter.leave_out
        starts, filters = await _restore(self, actor, slot, pipe)
        self.stages = pipe.all
        error: Exception | None = None
        self.running = True
        try:
            async with (
                OrderedPublisher(self.fabric, name=self.id, clock=self.clock) as publisher,
                anyio.create_task_group() as tg,
            ):
                pipe.emitter.publisher = publisher
                self._tg = tg
                cp = self._cp = Checkpointer(
                    self, actor, slot, publisher, self.stages, self._crash_soon
                )
                tg.start_soon(cp.run)
                for stage in self.stages:
                    await stage.setup(self)
                for subject in list(pipe.emitter.ready):
                    await pipe.gate.gate(subject)
                self._chain = link(pipe.inbound)
                pipe.emitter.build(pipe.outbound)
                if inputs:
                    mailbox = self._mailbox = _mailbox(self, actor, starts, filters)
                    await tg.start(mailbox.run)
                    tg.start_soon(self._catchup.report, self.positions)
                status.started()
                try:
                    if inputs:
                        await self._consume(actor, mailbox, cp)
                    else:
                        self.caught_up.set()
                        await run_source(actor, self._stop_event)
                        cp.raise_error()
                    if self._mailbox is not None:
                        await self._mailbox.ack(force=True)
                    await cp.final(self.positions, take_snapshot=bool(inputs))
                except Exception as exc:
                    error = exc
                tg.cancel_scope.cancel()
        finally:
            pipe.emitter.publisher = None
            self._mailbox = self._tg = self._chain = None
            for stage in self.stages:
                stage.close()
            self.running = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                try:
                    await actor.on_stop()
                except Exception as exc:
                    self.log.warning("on_stop_failed", error=repr(exc))
        await report_exit(self, error)

    def _crash_soon(self, error: BaseException) -> None:
        """The checkpoint writer failed: stop consuming, so the loop raises it."""
        self._stop_event.set()
        if self._mailbox is not None:
            self._mailbox.interrupt()

    async def _ensure_output(self, subject: str) -> None:
        actor, pipe = self._actor, self._pipeline
        assert actor is not None
        assert pipe is not None
        window = required_window(actor.checkpoint_interval, self.restart_allowance)
        await self.fabric.require_stream(subject, min_duplicate_window=window)
        pipe.emitter.ready.add(subject)
        if self._tg is not None:
            await pipe.gate.gate(subject)
            pipe.emitter.build(pipe.outbound)  # the gate joins the chain if it blocks

    async def _consume(self, actor: Actor, mailbox: Mailbox, cp: Checkpointer) -> None:
        every, interval = actor.checkpoint_every, actor.checkpoint_interval
        batch_stages = [s for s in self.stages if s.overrides("after_batch")]
        ticks = [t for s in self.stages if (t := s.tick()) is not None]
        tick = min(ticks, default=interval)
        while not self.stop_requested and cp.error is None:
            limit = actor.batch_size * (1 if self.caught_up.is_set() else _CATCHUP_BATCH_FACTOR)
            wait = interval - (self.clock.monotonic() - cp.last_at) if cp.since else interval
            deliveries = await mailbox.take(limit, min(max(0.0, wait), tick))
            for delivery in deliveries:
                self.stats.delivered += 1
                if delivery.seq > self.positions.get(delivery.subject, 0):
                    await self._deliver(delivery, cp)
                    if every is not None and cp.since >= every:
                        cp.snapshot(self.positions)
                mailbox.handled(delivery)
                if self.stop_requested:
                    break
            await mailbox.ack(force=not deliveries)
            if deliveries:
                self._catchup.check(self.positions)
            for stage in batch_stages:
                await stage.after_batch()
            if cp.due(None, interval):
                cp.snapshot(self.positions)
        cp.raise_error()

    async def _deliver(self, delivery: Delivery, cp: Checkpointer) -> None:
        assert self._chain is not None
        step, rest = self._chain
        subject, seq = delivery.subject, delivery.seq
        item = InputItem(
            subject, seq, delivery.headers or {}, delivery.payload, f"{subject}:{seq}",
            delivery.timestamp, delivery.pending, delivery.gap_from,
        )  # fmt: skip
        await step(item, rest)
        self.positions[delivery.subject] = delivery.seq
        cp.since += 1

    def _source_emitted(self) -> None:
        """Sources are checkpointed at emit boundaries."""
        cp, actor = self._cp, self._actor
        if cp is not None and actor is not None:
            cp.since += 1
            if cp.due(actor.checkpoint_every, actor.checkpoint_interval):
                cp.snapshot(self.positions)

    async def checkpoint_now(self) -> None:
        """Snapshot now and wait until that checkpoint is written."""
        if self._cp is None:
            raise RuntimeError(f"actor {self.id!r}: checkpoint() outside the running actor")
        self._cp.snapshot(self.positions)
        await self._cp.wait_written()


async def stop_requested(runtime: ActorRuntime) -> None:
    """Return once ``runtime`` is asked to stop (a waiting migration standby watches this)."""
    await runtime._stop_event.wait()


async def flush_outputs(runtime: ActorRuntime) -> None:
    """Wait until every output ``runtime`` emitted so far is acknowledged (stored)."""
    await runtime._publisher().flush()


async def _restore(
    runtime: ActorRuntime, actor: Actor, slot: CheckpointSlot, pipe: Pipeline
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Restore state, positions and sections; ready the streams; return where to consume
    from, and the filters of partitioned inputs (all partitions, or this one's share)."""
    checkpoint = slot.current
    if checkpoint is not None:
        actor.restore(checkpoint.state)
        runtime.positions = dict(checkpoint.positions)
        runtime.restored = True
        for stage in pipe.all:
            if stage.section is not None and stage.section in checkpoint.sections:
                found = checkpoint.sections[stage.section]
                stage.restore(found.data, found.version)
    inputs = runtime.inputs
    filters: dict[str, list[str]] = {}
    for subject in inputs:
        info = await runtime.fabric.require_stream(subject)
        split = partitions_in(info)
        if split is not None:
            filters[subject] = input_filters(runtime.id, subject, split, runtime.partition)
    for subject in type(actor).outputs:
        await runtime._ensure_output(subject)
    own = filters if runtime.partition is not None else None  # caught up at its share's end
    starts = await runtime._catchup.start(runtime.positions, own)
    if checkpoint is None and inputs:
        # a first checkpoint at once: a restart then knows where this actor started,
        # so items the stream drops meanwhile are a gap to recover, not a silent loss
        await slot.save(positions=runtime.positions, state=actor.snapshot())
    elif checkpoint is not None:
        await pipe.scan.scan(runtime, checkpoint.snapshot_at, checkpoint.section("outputs"))
    await actor.on_start()
    await runtime.event(
        Started(
            name=runtime.id, positions=dict(runtime.positions), epoch=slot.epoch, pid=os.getpid()
        )
    )
    if actor.history is not None:
        pipe.add_history(
            actor.history.open(runtime.state_dir / "history" / kv_key(runtime.id), name=runtime.id)
        )
    return starts, filters


def _mailbox(
    runtime: ActorRuntime, actor: Actor, starts: dict[str, int], filters: dict[str, list[str]]
) -> Mailbox:
    window = max(actor.max_in_flight, actor.batch_size * _CATCHUP_BATCH_FACTOR)
    return Mailbox(
        runtime.fabric,
        runtime.id,
        starts,
        batch=actor.batch_size,
        max_in_flight=window,
        max_bytes=actor.max_in_flight_bytes,
        clock=runtime.clock,
        filters=filters,
    )


async def run_actor(
    actor: ActorFactory,
    fabric: Fabric,
    *,
    id: str | None = None,
    args: Mapping[str, Any] | None = None,
    inputs: Sequence[str] | None = None,
    stages: Sequence[StageFactory] = (),
) -> ActorRuntime:
    """Run one actor until it stops (``request_stop``/cancellation) or crashes.

    Raises :class:`~diaspora.errors.ActorCrashed` when ``handle`` raises; run
    it again (or under a supervisor) to resume from the last checkpoint.
    Returns the runtime (positions and stats) after a normal stop.
    """
    runtime = ActorRuntime(actor, fabric, id=id, args=args, inputs=inputs, stages=stages)
    await runtime.run()
    return runtime
