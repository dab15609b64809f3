"""Flow control by QoS spec: a consumer's overload policy, and the producer's gate for ``block``.

The consumer side (:class:`InputFlow`, one per input with a QoS spec)
measures the input's lag (items behind the stream's head), the age of the
items it handles (time since the server stored them), their end-to-end
latency (since the producer emitted them), the arrival rate and its own
capacity (1 / the mean ``handle`` time). It is *overloaded* when any bound
of the spec is exceeded, and switches the stream into its policy:

- ``decimate(k)``: only items whose stream sequence is a multiple of ``k``
  are handled (deterministic, so a replay decimates the same items);
- ``aggregate(n, fn)``: every ``n`` items are combined field by field with
  ``fn`` and handled as one;
- ``drop_oldest``: items more than half the lag bound behind the head are
  skipped, so the consumer jumps to the newest data;
- ``block``: nothing changes at the consumer; producers of the stream wait
  (:class:`FlowGate`) while the slowest consumer is more than
  ``max_lag_items`` behind;
- ``scale_out``: the consumer asks for more replicas (see
  :mod:`diaspora.compute._scaleout`).

It switches back when every bound holds with a margin (half of each) and
its capacity exceeds the arrival rate by 10 %, so it does not flap. Every
switch is returned as a :class:`Switch` for the runtime to publish as an
event. Consumers publish their positions on ``diaspora.flow.<subject>``.

>>> from diaspora.streams._qos import OverloadPolicy, QosSpec
>>> now = [0.0]
>>> flow = InputFlow("xs", QosSpec(max_lag_items=100, policy=OverloadPolicy.decimate(4)),
...                  clock=lambda: now[0])
>>> flow.observe(seq=1, head=500, age=0.0, latency=None)
>>> flow.update_mode().mode
<Mode.DEGRADED: 'degraded'>
>>> [flow.admit(seq, {"x": seq}).action.value for seq in (2, 3, 4)]
['skip', 'skip', 'handle']
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import TaskStatus

if TYPE_CHECKING:
    pass

from diaspora import codec
from diaspora.errors import DecodeError
from diaspora.fabric import Fabric, Inbound
from diaspora.fabric._naming import RESERVED_PREFIX, token
from diaspora.log import get_logger
from diaspora.streams._meter import LagMeter, LatencyMeter
from diaspora.streams._qos import AggregateFn, OverloadPolicy, Policy, QosSpec

__all__ = [
    "FLOW_PREFIX",
    "Action",
    "Admission",
    "FlowGate",
    "InputFlow",
    "Mode",
    "Switch",
    "aggregate",
    "flow_subject",
    "position_report",
    "read_position_report",
]

FLOW_PREFIX: Final = f"{RESERVED_PREFIX}flow"
#: Capacity must beat the arrival rate by this factor before a degraded stream recovers.
_RECOVERY_HEADROOM: Final = 1.1
#: Seconds a mode is kept at least, so a stream does not flap.
_MIN_DWELL_S: Final = 0.5
_HANDLE_EWMA: Final = 0.1


def flow_subject(subject: str) -> str:
    """Where consumers of ``subject`` publish their positions (``diaspora.flow.<subject>``)."""
    return f"{FLOW_PREFIX}.{token(subject)}"


def position_report(consumer: str, position: int) -> bytes:
    """A consumer's position as published on :func:`flow_subject` (a msgpack map).

    >>> read_position_report(position_report("sum", 42))
    ('sum', 42)
    """
    return codec.encode({"consumer": consumer, "position": position})


def read_position_report(data: bytes) -> tuple[str, int] | None:
    """``(consumer, position)`` from a report, or ``None`` if it is not one."""
    try:
        report = codec.decode(data)
        return str(report["consumer"]), int(report["position"])
    except (DecodeError, KeyError, TypeError, ValueError):
        return None


class Mode(Enum):
    NORMAL = "normal"
    DEGRADED = "degraded"


class Action(Enum):
    HANDLE = "handle"  # hand ``data`` to handle()
    SKIP = "skip"  # decimated or dropped: advance past it
    HOLD = "hold"  # taken into an aggregate that is not complete yet


@dataclass(frozen=True, slots=True)
class Admission:
    """What to do with one input item; ``data``/``count`` for an aggregate."""

    action: Action
    data: Any = None
    count: int = 1


@dataclass(frozen=True, slots=True)
class Switch:
    """A change of mode, with the measurements that caused it (an event's fields)."""

    subject: str
    mode: Mode
    policy: str
    reason: str
    lag: int
    age_s: float | None
    latency_s: float | None
    arrival_rate: float
    capacity: float | None

    def fields(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "mode": self.mode.value,
            "policy": self.policy,
            "reason": self.reason,
            "lag": self.lag,
            "age_s": _round(self.age_s),
            "latency_s": _round(self.latency_s),
            "arrival_rate": round(self.arrival_rate, 1),
            "capacity": None if self.capacity is None else round(self.capacity, 1),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


class InputFlow:
    """The QoS state of one input of one consumer (see the module docstring)."""

    def __init__(
        self, subject: str, spec: QosSpec, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.subject = subject
        self.spec = spec
        self.policy = spec.policy
        self._clock = clock
        self.mode = Mode.NORMAL
        self.lag = LagMeter(window=5.0, tick=0.25, now=clock)
        self.latency = LatencyMeter(window=30.0, now=clock)
        self.age: float | None = None
        self.last_latency: float | None = None
        self.handle_time: float | None = None
        self._since = clock()
        self._held: list[Any] = []
        self.stats: dict[str, int] = {"skipped": 0, "aggregated": 0, "switches": 0}
        self.last_arrival = clock()
        self.stalled = False
        #: who forced the current mode (:meth:`force`); ``None``: the measurements decide
        self.forced: str | None = None

    # -- measuring ----------------------------------------------------------------------

    def observe(self, *, seq: int, head: int, age: float | None, latency: float | None) -> None:
        """Record one delivered item: its sequence, the stream head, its age and latency."""
        self.lag.update(head, seq - 1)
        self.age = age
        self.last_latency = latency
        if latency is not None and latency >= 0:
            self.latency.record(latency)
        self.last_arrival = self._clock()

    def handled(self, seq: int, seconds: float) -> None:
        """``handle`` of the item at ``seq`` took ``seconds``."""
        self.lag.update(0, seq)
        if self.handle_time is None:
            self.handle_time = seconds
        else:
            self.handle_time += _HANDLE_EWMA * (seconds - self.handle_time)

    @property
    def capacity(self) -> float | None:
        """Items/s this consumer can handle at full fidelity (1 / mean handle time)."""
        if self.handle_time is None:
            return None
        return math.inf if self.handle_time <= 0 else 1.0 / self.handle_time

    @property
    def arrival_rate(self) -> float:
        measured = self.lag.head_rate
        if measured > 0:
            return measured
        return self.spec.rate or 0.0

    # -- deciding -----------------------------------------------------------------------

    def _overload(self, margin: float) -> str | None:
        spec = self.spec
        lag = self.lag.lag
        if spec.max_lag_items is not None and lag > spec.max_lag_items * margin:
            return f"lag {lag} > {spec.max_lag_items * margin:g} items"
        age, latency = self.age, self.last_latency
        if spec.max_lag_seconds is not None and age is not None:
            bound = spec.max_lag_seconds * margin
            if age > bound:
                return f"item age {age:.3f}s > {bound:g}s"
        if spec.max_latency is not None and latency is not None:
            bound = spec.max_latency * margin
            if latency > bound:
                return f"latency {latency:.3f}s > {bound:g}s"
        return None

    def force(self, policy: OverloadPolicy | None, by: str) -> Switch | None:
        """Enter ``policy`` now and hold it (``None``: back to the spec's policy, normal at
        once if the bounds hold and capacity beats arrivals, else when the measurements
        say so); the switch, if the mode changed."""
        now = self._clock()
        if policy is not None:
            self.policy, self.forced = policy, by
            return (
                None
                if self.mode is Mode.DEGRADED
                else self._switch(Mode.DEGRADED, f"forced by {by}", now)
            )
        self.policy, self.forced = self.spec.policy, None
        if self.mode is Mode.NORMAL or self._overload(0.5) is not None:
            return None
        capacity = self.capacity
        if capacity is not None and capacity < _RECOVERY_HEADROOM * self.arrival_rate:
            return None  # still short of capacity: degraded until the measurements say not
        return self._switch(Mode.NORMAL, f"released by {by}", now)

    def update_mode(self) -> Switch | None:
        """Switch mode if the measurements call for it; return the switch, if any."""
        if self.forced is not None:
            return None
        now = self._clock()
        if now - self._since < _MIN_DWELL_S and self.stats["switches"]:
            return None
        if self.mode is Mode.NORMAL:
            reason = self._overload(1.0)
            if reason is None:
                return None
            return self._switch(Mode.DEGRADED, reason, now)
        still = self._overload(0.5)
        if still is not None:
            return None
        capacity = self.capacity
        if capacity is not None and capacity < _RECOVERY_HEADROOM * self.arrival_rate:
            return None
        return self._switch(Mode.NORMAL, "bounds hold and capacity exceeds arrivals", now)

    def _switch(self, mode: Mode, reason: str, now: float) -> Switch:
        self.mode = mode
        self._since = now
        self.stats["switches"] += 1
        return Switch(
            subject=self.subject,
            mode=mode,
            policy=self.policy.kind.value,
            reason=reason,
            lag=self.lag.lag,
            age_s=self.age,
            latency_s=self.last_latency,
            arrival_rate=self.arrival_rate,
            capacity=self.capacity,
        )

    # -- acting -------------------------------------------------------------------------

    def admit(self, seq: int, data: Any) -> Admission:
        """What to do with the item at ``seq`` (decoded ``data``) in the current mode."""
        if self.mode is Mode.NORMAL and not self._held:
            return Admission(Action.HANDLE, data)
        kind = self.policy.kind
        if kind is Policy.DECIMATE and self.mode is Mode.DEGRADED:
            if seq % (self.policy.k or 1) == 0:
                return Admission(Action.HANDLE, data)
            self.stats["skipped"] += 1
            return Admission(Action.SKIP)
        if kind is Policy.DROP_OLDEST and self.mode is Mode.DEGRADED:
            bound = self.spec.max_lag_items
            behind = self.lag.lag
            if bound is not None and behind > bound // 2:
                self.stats["skipped"] += 1
                return Admission(Action.SKIP)
            return Admission(Action.HANDLE, data)
        if kind is Policy.AGGREGATE:
            self._held.append(data)
            n = self.policy.n or 1
            if len(self._held) >= n or self.mode is Mode.NORMAL:
                held, self._held = self._held, []
                self.stats["aggregated"] += len(held)
                fn = self.policy.fn or AggregateFn.MEAN
                return Admission(Action.HANDLE, aggregate(held, fn), count=len(held))
            return Admission(Action.HOLD)
        return Admission(Action.HANDLE, data)

    @property
    def holding(self) -> int:
        """Items taken into an incomplete aggregate."""
        return len(self._held)

    # -- stalls -------------------------------------------------------------------------

    def check_stall(self) -> bool | None:
        """``True`` when a stall starts, ``False`` when it ends, ``None`` otherwise."""
        deadline = self.spec.stall_deadline
        if deadline is None:
            return None
        quiet = self._clock() - self.last_arrival
        if not self.stalled and quiet > deadline:
            self.stalled = True
            return True
        if self.stalled and quiet <= deadline:
            self.stalled = False
            return False
        return None


def aggregate(items: Sequence[Any], fn: AggregateFn) -> Any:
    """Combine items field by field: numbers and numeric arrays with ``fn``, the rest: last.

    >>> aggregate([{"t": 1.0, "id": "a"}, {"t": 3.0, "id": "b"}], AggregateFn.MEAN)
    {'t': 2.0, 'id': 'b'}
    """
    import numpy as np

    if not items:
        raise ValueError("aggregate: no items")
    first = items[0]
    if fn is AggregateFn.FIRST:
        return first
    if fn is AggregateFn.LAST:
        return items[-1]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(x, dict) and k in x for x in items)]
        return {k: aggregate([x[k] for x in items], fn) for k in keys}
    if all(_numeric(x) for x in items):
        stacked = np.stack([np.asarray(x) for x in items])
        reduce = _reducer(fn)
        combined = reduce(stacked, axis=0)
        if isinstance(first, np.ndarray):
            return combined
        return combined.item()
    return items[-1]


def _reducer(fn: AggregateFn) -> Callable[..., Any]:
    import numpy as np

    reducers: dict[AggregateFn, Callable[..., Any]] = {
        AggregateFn.MEAN: np.mean,
        AggregateFn.SUM: np.sum,
        AggregateFn.MIN: np.min,
        AggregateFn.MAX: np.max,
    }
    return reducers[fn]


def _numeric(x: Any) -> bool:
    import numpy as np

    if isinstance(x, bool):
        return False
    if isinstance(x, int | float | np.number):
        return True
    return isinstance(x, np.ndarray) and x.dtype.kind in "iuf"


class FlowGate:
    """The producer side of ``block``: wait while the slowest consumer is too far behind.

    Consumers of the stream publish ``{"consumer", "position"}`` on
    :func:`flow_subject`; a consumer not heard from for ``ttl`` seconds (dead,
    or gone) stops counting, so a crashed consumer cannot block a producer
    forever. Run :meth:`run` in a task group, then ``await wait(head)``
    before each emit, with ``head`` the producer's newest stream sequence.
    """

    def __init__(self, fabric: Fabric, subject: str, max_lag: int, *, ttl: float = 10.0) -> None:
        self._fabric = fabric
        self.subject = subject
        self.max_lag = max_lag
        self.ttl = ttl
        self.positions: dict[str, tuple[int, float]] = {}
        self._changed = anyio.Event()
        self.blocked_s = 0.0
        self._log = get_logger(stream=subject)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async def on_position(msg: Inbound) -> None:
            report = read_position_report(msg.data)
            if report is None:
                return
            consumer, position = report
            self.positions[consumer] = (position, time.monotonic())
            self._changed.set()
            self._changed = anyio.Event()

        async with self._fabric.subscription(flow_subject(self.subject), on_position):
            task_status.started()
            await anyio.sleep_forever()

    def slowest(self) -> int | None:
        """The position of the slowest live consumer, or ``None`` if none is live."""
        now = time.monotonic()
        live = [p for p, seen in self.positions.values() if now - seen <= self.ttl]
        return min(live) if live else None

    async def wait(self, head: int) -> None:
        """Return once ``head`` is within ``max_lag`` of every live consumer."""
        started: float | None = None
        while True:
            slowest = self.slowest()
            if slowest is None or head - slowest <= self.max_lag:
                break
            if started is None:
                started = time.monotonic()
            changed = self._changed
            with anyio.move_on_after(min(1.0, self.ttl)):
                await changed.wait()
        if started is not None:
            self.blocked_s += time.monotonic() - started
