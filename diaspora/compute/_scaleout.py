"""The ``scale_out`` policy: more consumer replicas while a keyed, stateful consumer lags.

A consumer that may scale out is split by key into ``partitions`` (fixed:
the unit of state). Partition ``k`` is one :class:`~diaspora.actor.ActorRuntime`
with id ``<id>.p<k>`` that handles only the items whose key hashes to ``k``
and checkpoints only their state, so exactly-once holds per partition
whatever replica runs it. A *replica* runs some partitions and handles one
message at a time between them (one sequential worker); replicas are the
children of a ``simple_one_for_one`` supervisor.

:class:`ScaleOutGroup` watches the input's lag (the stream's head against
the slowest partition's position, which consumers publish on
``diaspora.flow.<subject>``). Above the stream's ``max_lag_items`` for a
second it grows the replicas (up to ``max_replicas``) to what the rates it
measured while lagging need: arrival rate / drain rate times the present
parallelism, plus a quarter, or what drains the backlog in about five
seconds if that is more (a restart on a backlog), and at least double
(double, if lagging three seconds with no drain measured); below a quarter
of the bound for three seconds it halves them (down to ``min_replicas``). A change
stops every replica gracefully (each partition writes its checkpoint) and
starts the new set, partition ``k`` on replica ``k % n``; every change is a
:class:`~diaspora.events.ScaledOut` / :class:`~diaspora.events.ScaledIn`
event, handed to the group's sink (its supervisor's, else its fabric, which
publishes it on ``diaspora.events.scaleout.<id>.>``).
The group splits its input subject into ``partitions`` on start
(:func:`~diaspora.fabric.partition_stream`): producers' ``emit(subject,
data, key=...)`` then publishes each item to its key's partition subject,
and partition ``k``'s consumer is delivered only those (and items plain
publishers put on the bare subject, which every partition reads and filters
by key), so the partitions together read the input once; the lag is the
partitions' consumers' backlogs summed. With ``partitioned=False`` (on a
subject nobody split) each partition reads the whole input and skips other
partitions' items (``partitions`` times the reads of one consumer); a
subject once split is read split (the stream says so, whoever reads it).

>>> ScaleOutGroup.assignment(partitions=5, replicas=2)
[[0, 2, 4], [1, 3]]
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import anyio
from anyio.abc import TaskStatus

from diaspora.actor import Actor, ActorRuntime
from diaspora.actor._mailbox import consumer_name
from diaspora.errors import ConfigError
from diaspora.events import EventSink, ScaledIn, ScaledOut
from diaspora.fabric import Fabric, Inbound, consumer_progress, partition_stream
from diaspora.log import get_logger
from diaspora.streams._flow import flow_subject, read_position_report
from diaspora.streams._qos import Policy
from diaspora.streams._registry import lookup_qos
from diaspora.supervision import (
    ChildSpec,
    Restart,
    Runnable,
    Strategy,
    Supervisor,
    SupervisorSpec,
    child_events,
)

__all__ = ["Replica", "ScaleOutGroup"]

_OVERLOAD_S: Final = 1.0
_UNDERLOAD_S: Final = 3.0
_SETTLE_S: Final = 2.0
#: A backlog is sized to be drained in about this long (seconds).
_DRAIN_S: Final = 5.0
#: Lagging this long with no drain measured at all: double the replicas anyway.
_NO_PROGRESS_S: Final = 3.0


class Replica:
    """One consumer replica: the runtimes of ``partitions``, one message at a time."""

    def __init__(
        self,
        actor: type[Actor],
        fabric: Fabric,
        *,
        id: str,
        partitions: Sequence[int],
        total: int,
        args: Mapping[str, Any] | None = None,
        state_dir: str | None = None,
        started: Callable[[int, ActorRuntime], None] | None = None,
    ) -> None:
        self.partitions = list(partitions)
        lock = anyio.Lock()

        def start(k: int) -> Runnable:
            runtime = ActorRuntime(
                actor,
                fabric,
                id=f"{id}.p{k}",
                args=args,
                partition=(k, total),
                handle_lock=lock,
                state_dir=state_dir,
            )
            if started is not None:
                started(k, runtime)
            return runtime

        children = [ChildSpec(f"p{k}", start=_bind(start, k)) for k in self.partitions]
        name = f"{id}.r{'-'.join(map(str, self.partitions))}"
        self._supervisor = Supervisor(
            SupervisorSpec(children, strategy=Strategy.ONE_FOR_ONE, intensity=10, period=5.0),
            name=name,
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self._supervisor.run(task_status=task_status)

    def request_stop(self) -> None:
        self._supervisor.request_stop()


def _bind(start: Any, k: int) -> Any:
    def bound() -> Runnable:
        runnable: Runnable = start(k)
        return runnable

    return bound


class ScaleOutGroup:
    """A keyed consumer that scales its replicas with its input's lag (a ``Runnable``).

    The input (the actor's single input subject) must have a declared QoS
    with ``max_lag_items``; ``max_replicas`` defaults to the policy's, else
    ``partitions``. ``events`` receives each resize; by default the sink of
    the supervisor that starts the group, else ``fabric``. ``partitioned``
    splits the input subject so each partition reads only its own items
    (producers must ``emit(subject, data, key=...)``).

    >>> ScaleOutGroup.assignment(partitions=4, replicas=4)
    [[0], [1], [2], [3]]
    """

    def __init__(
        self,
        actor: type[Actor],
        fabric: Fabric,
        *,
        id: str,
        partitions: int = 4,
        min_replicas: int = 1,
        max_replicas: int | None = None,
        args: Mapping[str, Any] | None = None,
        state_dir: str | None = None,
        check_every: float = 0.25,
        events: EventSink | None = None,
        partitioned: bool = True,
    ) -> None:
        if len(actor.inputs) != 1:
            raise ConfigError(
                f"scale-out group {id!r}: {actor.__qualname__} must have exactly one input "
                f"(has {actor.inputs})"
            )
        if not 1 <= min_replicas <= partitions:
            raise ConfigError(
                f"scale-out group {id!r}: need 1 <= min_replicas ({min_replicas}) <= "
                f"partitions ({partitions})"
            )
        self.actor = actor
        self.fabric = fabric
        self.events = events if events is not None else child_events(fabric)
        self.id = id
        self.subject = actor.inputs[0]
        self.partitions = partitions
        self.min_replicas = min_replicas
        self._max_replicas = max_replicas
        self.args = dict(args or {})
        self.state_dir = state_dir
        self.check_every = check_every
        self.replicas = 0
        self.partitioned = partitioned
        self.history: list[tuple[float, int, int]] = []  # (time, replicas, lag)
        #: every runtime each partition ran as, oldest first (for :meth:`deliveries`)
        self.runtimes: dict[int, list[ActorRuntime]] = {}
        self._backlogs: dict[int, float] = {}
        self._handles: list[Runnable] = []
        self._positions: dict[str, int] = {}
        self._stop = anyio.Event()
        self._resizing = anyio.Lock()
        self._supervisor: Supervisor | None = None
        self._log = get_logger(group=id)

    @staticmethod
    def assignment(partitions: int, replicas: int) -> list[list[int]]:
        """Partition ``k`` runs on replica ``k % replicas``."""
        return [list(range(r, partitions, replicas)) for r in range(replicas)]

    def request_stop(self) -> None:
        self._stop.set()

    async def resize(self, replicas: int) -> None:
        """Run on ``replicas`` replicas now (an operator's or a predictor's decision).

        The controller goes on deciding from the lag afterwards.
        """
        supervisor = self._supervisor
        if supervisor is None:
            raise RuntimeError(f"scale-out group {self.id!r} is not running")
        if not 1 <= replicas <= self.partitions:
            raise ConfigError(
                f"scale-out group {self.id!r}: resize({replicas}): need 1 <= replicas <= "
                f"partitions ({self.partitions})"
            )
        await self._resize(supervisor, replicas, await self.lag())

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        spec = await lookup_qos(self.fabric, self.subject)
        where = f"scale-out group {self.id!r}"
        if spec is None or spec.max_lag_items is None:
            raise ConfigError(
                f"{where}: declare a QoS with max_lag_items for {self.subject!r} "
                "(diaspora.streams.declare_qos or [streams] in the config file)"
            )
        if spec.policy.kind is not Policy.SCALE_OUT:
            self._log.warning("policy_not_scale_out", subject=self.subject, policy=spec.policy)
        max_replicas = self._max_replicas or spec.policy.max_replicas or self.partitions
        max_replicas = min(max_replicas, self.partitions)
        max_lag = spec.max_lag_items
        if self.partitioned:
            await partition_stream(self.fabric, self.subject, self.partitions)
        template = ChildSpec("replica", start=self._replica, restart=Restart.TRANSIENT)
        supervisor = Supervisor(
            SupervisorSpec([template], strategy=Strategy.SIMPLE_ONE_FOR_ONE, intensity=10),
            name=self.id,
        )
        async with anyio.create_task_group() as tg:
            await tg.start(supervisor.run)
            self._supervisor = supervisor
            try:
                async with self.fabric.subscription(flow_subject(self.subject), self._on_position):
                    await self._resize(supervisor, self.min_replicas, lag=0)
                    task_status.started()
                    await self._control(supervisor, max_lag, max_replicas)
            finally:
                self._supervisor = None
                supervisor.request_stop()

    def _replica(self, partitions: list[int]) -> Runnable:
        return Replica(
            self.actor,
            self.fabric,
            id=self.id,
            partitions=partitions,
            total=self.partitions,
            args=self.args,
            state_dir=self.state_dir,
            started=lambda k, runtime: self.runtimes.setdefault(k, []).append(runtime),
        )

    def deliveries(self) -> dict[int, int]:
        """Deliveries each partition's runtimes took from their consumers, since the start."""
        return {k: sum(r.stats.delivered for r in rs) for k, rs in sorted(self.runtimes.items())}

    async def _on_position(self, msg: Inbound) -> None:
        report = read_position_report(msg.data)
        if report is None:
            return
        consumer, position = report
        if consumer.startswith(f"{self.id}.p"):
            self._positions[consumer] = max(position, self._positions.get(consumer, 0))

    async def lag(self) -> int:
        """The stream's head minus the slowest partition's position."""
        head, position = await self._progress()
        return max(0, head - position)

    async def _progress(self) -> tuple[int, int]:
        """The stream's head and the slowest partition's position (0 before any report).

        Partitioned, the position is the head less the partitions' backlogs (a
        partition with nothing to read would otherwise hold the minimum back):
        what its consumer has not delivered, and of what it delivered but has not
        acknowledged, the share after the partition's position (its runtime's,
        read live: reports come once per batch, which is seconds while catching up).
        """
        _, head = await self.fabric.stream_bounds(self.subject)
        if self.partitioned:
            for k in range(self.partitions):
                runtime = f"{self.id}.p{k}"
                progress = await consumer_progress(
                    self.fabric, self.subject, consumer_name(runtime)
                )
                if progress is None:  # being recreated: keep what it last said
                    continue
                self._backlogs[k] = progress.unhandled(self._position(k, runtime))
            if len(self._backlogs) == self.partitions:
                return head, head - round(sum(self._backlogs.values()))
        positions = [self._positions.get(f"{self.id}.p{k}") for k in range(self.partitions)]
        known = [p for p in positions if p is not None]
        return head, min(known) if known else 0

    def _position(self, k: int, runtime: str) -> int:
        """Partition ``k``'s position: reported (once per batch), or its runtime's own."""
        reported = self._positions.get(runtime, 0)
        running = self.runtimes.get(k)
        live = running[-1].positions.get(self.subject, 0) if running else 0
        return max(reported, live)

    def parallelism(self, replicas: int) -> float:
        """How many replicas' worth of work ``replicas`` do at once: the busiest one runs
        ``ceil(partitions / replicas)`` partitions.

        >>> group = ScaleOutGroup.__new__(ScaleOutGroup)
        >>> group.partitions = 8
        >>> [group.parallelism(r) for r in (1, 2, 3, 4, 5, 8)]
        [1.0, 2.0, 2.6666666666666665, 4.0, 4.0, 8.0]
        """
        return self.partitions / math.ceil(self.partitions / replicas)

    def _needed(self, samples: deque[tuple[float, int, int]], max_replicas: int) -> int | None:
        """Replicas the measured arrival and drain rates call for, plus a quarter, or to
        drain the backlog in about five seconds if that takes more, and at least double;
        ``None``: no drain measured yet, wait."""
        (t0, head0, pos0), (t1, head1, pos1) = samples[0], samples[-1]
        if pos1 <= pos0:  # positions come per fetched batch: maybe none in the window yet
            return self.replicas * 2 if t1 - t0 >= _NO_PROGRESS_S else None
        now = self.parallelism(self.replicas)
        arrived, drained, lag = head1 - head0, pos1 - pos0, head1 - pos1
        # keep up with arrivals, with a margin; and drain the backlog within _DRAIN_S
        # (a restart on a backlog has no arrivals to size by)
        elapsed = max(t1 - t0, 1e-9)
        want = max(
            now * arrived / drained * 1.25,
            now * (arrived + lag * elapsed / _DRAIN_S) / drained,
        )
        fits = (
            r for r in range(self.replicas * 2, max_replicas + 1) if self.parallelism(r) >= want
        )
        return next(fits, max_replicas)

    async def _control(self, supervisor: Supervisor, max_lag: int, max_replicas: int) -> None:
        over_since: float | None = None
        under_since: float | None = None
        settled_at = time.monotonic()
        samples: deque[tuple[float, int, int]] = deque()  # (time, head, position)
        while not self._stop.is_set():
            with anyio.move_on_after(self.check_every):
                await self._stop.wait()
            try:
                head, position = await self._progress()
            except Exception as exc:  # the fabric is down: decide nothing meanwhile
                self._log.debug("lag_unknown", error=repr(exc))
                continue
            lag = max(0, head - position)
            now = time.monotonic()
            self.history.append((time.time(), self.replicas, lag))
            if now - settled_at < _SETTLE_S:
                samples.clear()
                continue
            over_since = (over_since or now) if lag > max_lag else None
            under_since = (under_since or now) if lag <= max_lag // 4 else None
            if over_since is None:
                samples.clear()
            else:
                samples.append((now, head, position))
            needed = (
                self._needed(samples, max_replicas)
                if over_since and now - over_since >= _OVERLOAD_S
                else None
            )
            if needed is not None and self.replicas < max_replicas:
                await self._resize(supervisor, min(max_replicas, needed), lag)
            elif (
                under_since
                and now - under_since >= _UNDERLOAD_S
                and self.replicas > self.min_replicas
            ):
                await self._resize(supervisor, max(self.min_replicas, self.replicas // 2), lag)
            else:
                continue
            over_since = under_since = None
            samples.clear()
            settled_at = time.monotonic()

    async def _resize(self, supervisor: Supervisor, replicas: int, lag: int) -> None:
        """Stop every replica (each partition checkpoints), start ``replicas`` new ones."""
        async with self._resizing:
            await self._replace(supervisor, replicas, lag)

    async def _replace(self, supervisor: Supervisor, replicas: int, lag: int) -> None:
        before = self.replicas
        for handle in self._handles:
            await supervisor.terminate_child(handle)
        handles = [
            await supervisor.start_child(partitions)
            for partitions in self.assignment(self.partitions, replicas)
        ]
        self._handles = [handle for handle in handles if handle is not None]  # None: declined
        self.replicas = replicas
        if before:
            resized = ScaledOut if replicas > before else ScaledIn
            await self.events.emit(resized(name=self.id, replicas=replicas, before=before, lag=lag))
