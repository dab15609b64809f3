"""Typed events: everything observable, one frozen value per kind.

Every decision the framework takes (an actor started, crashed, fell behind,
lost items; a supervisor restarted a child or gave up; a process node hung)
is an :class:`Event`. Its type fixes the subject it is published under,
``diaspora.events.<category>.<name>.<kind>``, and the level it is logged
at; its fields are the same in the log line and on the wire. Whoever emits
events takes an :class:`EventSink`: a :class:`~diaspora.fabric.Fabric` logs
and publishes them, :class:`LogSink` only logs, :class:`MemorySink` keeps them
(for tests), :class:`TeeSink` hands each to several sinks.

>>> ev = Lost(name="sum", subject="xs", producer="src", first=3, last=4, count=2, by="item")
>>> ev.subject_name
'diaspora.events.actor.sum.lost'
>>> ev.level.value, ev.fields()["count"]
('warning', 2)
>>> decode_record(ev.record(at=0.0)) == ev
True

The wire record is a msgpack map ``{"category", "name", "kind", "time",
**fields}``; a plain NATS client reads it as such, and
:func:`decode_record` turns it back into the typed value (kinds it does not
know become :class:`UnknownEvent`, so an older reader survives a newer writer).

The kinds, by category:

- ``actor``: :class:`Started`, :class:`Stopped`, :class:`Fenced`,
  :class:`Crashed`, :class:`HandleFailed`, :class:`Lag`, :class:`CaughtUp`, :class:`PolicyOn`,
  :class:`PolicyOff`, :class:`Stall`, :class:`StallEnd`, :class:`Gap`,
  :class:`Lost`, :class:`Replayed`, :class:`Reconstructed`, :class:`Thinned`,
  :class:`DeadLettered`,
  :class:`Checkpointed`.
- ``supervision``: :class:`ChildStarted`, :class:`StartFailed`,
  :class:`Exited`, :class:`Restarted`, :class:`BackingOff`, :class:`GaveUp`,
  :class:`Terminated`, :class:`Deleted`, :class:`Ignored`,
  :class:`SelfShutdown`, :class:`NodeStarted`,
  :class:`NodeExited`, :class:`NodeHung`.
- ``scaleout``: :class:`ScaledOut`, :class:`ScaledIn`.
- ``fabric``: :class:`Reconnected`.
- ``trigger``: :class:`Fired`.
- ``link``: :class:`LinkFaulted`, :class:`LinkHealed` (``name`` is the site).
- ``view``: :class:`GroupOpened`, :class:`GroupCompleted` (both counted per
  batch, not per group: no publish per item), :class:`GroupDropped` (``name``
  is the view actor's id); :class:`ItemStale` (``name``: the actor that dropped
  the item), :class:`Pinned`, :class:`Unpinned`, :class:`ViewSnapshot`.
- ``migration``: :class:`Migrated`, :class:`MigrationAborted` (``name`` is the actor).
- ``pool``: :class:`Deficit`, :class:`Healed`, :class:`SiteDegraded`, :class:`Placed`,
  :class:`Moved`, :class:`Scaled`, :class:`Retired` (``name`` is the pool).
- ``monitor``: :class:`MonitorWarning`, :class:`MonitorResolved`, :class:`MonitorAction`
  (``name`` is the monitor).
- ``storage``: :class:`DegradedRead`, :class:`FragmentCorrupt`, :class:`FragmentRepaired`,
  :class:`RepairDone`, :class:`Relayout`, :class:`SiteUnreachable` (``name`` is the bucket).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Final, Protocol, TypeVar

from diaspora.log import FilteringBoundLogger, get_logger

__all__ = [
    "EVENTS_PREFIX",
    "BackingOff",
    "CaughtUp",
    "Checkpointed",
    "ChildStarted",
    "Crashed",
    "DeadLettered",
    "Deficit",
    "DegradedRead",
    "Deleted",
    "Event",
    "EventSink",
    "Exited",
    "Fenced",
    "Fired",
    "FragmentCorrupt",
    "FragmentRepaired",
    "Gap",
    "GaveUp",
    "GroupCompleted",
    "GroupDropped",
    "GroupOpened",
    "HandleFailed",
    "Healed",
    "Ignored",
    "ItemStale",
    "Lag",
    "Level",
    "LinkFaulted",
    "LinkHealed",
    "LogSink",
    "Lost",
    "MemorySink",
    "Migrated",
    "MigrationAborted",
    "MonitorAction",
    "MonitorResolved",
    "MonitorWarning",
    "Moved",
    "NodeExited",
    "NodeHung",
    "NodeStarted",
    "Pinned",
    "Placed",
    "PolicyOff",
    "PolicyOn",
    "Reconnected",
    "Reconstructed",
    "Relayout",
    "RepairDone",
    "Replayed",
    "Restarted",
    "Retired",
    "Scaled",
    "ScaledIn",
    "ScaledOut",
    "SelfShutdown",
    "SiteDegraded",
    "SiteUnreachable",
    "Stall",
    "StallEnd",
    "StartFailed",
    "Started",
    "Stopped",
    "TeeSink",
    "Terminated",
    "Thinned",
    "UnknownEvent",
    "Unpinned",
    "ViewSnapshot",
    "decode_record",
    "event_subject",
    "event_types",
    "events_input",
    "log_event",
    "logs_events",
]

EVENTS_PREFIX: Final = "diaspora.events"
_BAD_TOKEN_CHARS: Final = re.compile(r"[\s.*>]")


def _token(name: str) -> str:
    return _BAD_TOKEN_CHARS.sub("_", name) or "_"


def event_subject(category: str, name: str, kind: str) -> str:
    """``diaspora.events.<category>.<name>.<kind>``, each part made a single token.

    >>> event_subject("actor", "root.sum", "crashed")
    'diaspora.events.actor.root_sum.crashed'
    """
    return f"{EVENTS_PREFIX}.{_token(category)}.{_token(name)}.{_token(kind)}"


def events_input(of: type[Event] | str = "*", name: str = "*", kind: str = "*") -> str:
    """The subject pattern that makes an actor input consume events.

    ``of`` is an event type (its category and kind) or a category; ``*``
    matches any one token. ``name`` is made a single token as in the subject
    the event is published under. Put it in an actor's ``inputs``; each
    message's :attr:`Message.event <diaspora.Message.event>` is then the typed event.

    >>> events_input(Lag)
    'diaspora.events.actor.*.lag'
    >>> events_input(Crashed, name="root.sum")
    'diaspora.events.actor.root_sum.crashed'
    >>> events_input("supervision")
    'diaspora.events.supervision.*.*'
    """
    if isinstance(of, type):
        if kind != "*":
            raise TypeError(f"events_input({of.__name__}, kind={kind!r}): the type fixes the kind")
        category, kind = of.category, of.kind
    else:
        category = of

    def part(value: str) -> str:
        return value if value == "*" else _token(value)

    return f"{EVENTS_PREFIX}.{part(category)}.{part(name)}.{part(kind)}"


class Level(StrEnum):
    """The log level of an event."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One observable fact. ``name`` is who it is about (an actor id, a supervisor name...).

    Subclasses set ``category`` and ``kind`` (the subject tokens) and
    ``default_level``; their dataclass fields are the event's fields.
    """

    category: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    default_level: ClassVar[Level] = Level.INFO

    name: str

    @property
    def level(self) -> Level:
        """The level this event is logged at (some kinds depend on their fields)."""
        return self.default_level

    @property
    def subject_name(self) -> str:
        """The subject the event is published under."""
        return event_subject(self.category, self.name, self.kind)

    def fields(self) -> dict[str, Any]:
        """The event's fields besides ``name`` (the same in the log line and on the wire)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}

    def record(self, *, at: float | None = None) -> dict[str, Any]:
        """The wire record: ``{"category", "name", "kind", "time", **fields}``."""
        return {
            "category": self.category,
            "name": self.name,
            "kind": self.kind,
            "time": time.time() if at is None else at,
            **self.fields(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Event):
    """An event of a kind this reader does not know (kept whole, never dropped)."""

    of_category: str
    of_kind: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def subject_name(self) -> str:
        return event_subject(self.of_category, self.name, self.of_kind)

    def fields(self) -> dict[str, Any]:
        return dict(self.data)

    def record(self, *, at: float | None = None) -> dict[str, Any]:
        return {
            "category": self.of_category,
            "name": self.name,
            "kind": self.of_kind,
            "time": time.time() if at is None else at,
            **self.data,
        }


def decode_record(record: Mapping[str, Any]) -> Event:
    """The typed event of a wire record (``time`` is dropped; unknown kinds kept whole).

    >>> decode_record({"category": "actor", "name": "sum", "kind": "lag", "lag": 7})
    Lag(name='sum', lag=7, catching_up=True)
    """
    category = str(record.get("category", ""))
    kind = str(record.get("kind", ""))
    name = str(record.get("name", ""))
    cls = _kinds().get((category, kind))
    rest = {k: v for k, v in record.items() if k not in ("category", "name", "kind", "time")}
    if cls is None:
        return UnknownEvent(name=name, of_category=category, of_kind=kind, data=rest)
    known = _FIELDS.get(cls)
    if known is None:  # dataclasses.fields per record is most of a decode: once per type
        known = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    try:
        return cls(name=name, **{k: v for k, v in rest.items() if k in known})
    except TypeError:  # a field missing: keep the record rather than fail the reader
        return UnknownEvent(name=name, of_category=category, of_kind=kind, data=rest)


def event_types() -> list[type[Event]]:
    """Every concrete event type, in the order this module defines them.

    >>> [t.__name__ for t in event_types() if t.category == "scaleout"]
    ['ScaledOut', 'ScaledIn']
    """
    return list(_kinds().values())


def _kinds() -> dict[tuple[str, str], type[Event]]:
    """Every concrete event type by (category, kind); built once, on first use."""
    if not _KINDS:
        # the module's names, not __subclasses__(): slots=True replaces each class once made
        for value in list(globals().values()):
            is_kind = isinstance(value, type) and issubclass(value, Event) and bool(value.kind)
            if is_kind and value is not UnknownEvent:
                _KINDS[(value.category, value.kind)] = value
    return _KINDS


_KINDS: dict[tuple[str, str], type[Event]] = {}
_FIELDS: dict[type[Event], frozenset[str]] = {}


class EventSink(Protocol):
    """Where events go. ``emit`` must be quick and must not raise.

    A sink that logs what it is given says so with a class attribute
    ``logs_events = True`` (see :func:`logs_events`), so that whoever hands it
    events does not log them a second time.
    """

    async def emit(self, event: Event) -> None: ...


def logs_events(sink: object) -> bool:
    """Whether ``sink`` logs the events it is given (its ``logs_events`` attribute).

    >>> logs_events(LogSink()), logs_events(MemorySink()), logs_events(TeeSink(MemorySink()))
    (True, False, False)
    """
    return getattr(sink, "logs_events", False) is True


def log_event(log: FilteringBoundLogger, event: Event) -> None:
    """One structlog line: the kind as the message, ``<category>=<name>`` and the fields."""
    category, kind = event.category, event.kind
    if isinstance(event, UnknownEvent):
        category, kind = event.of_category, event.of_kind
    fields = event.fields()
    fields.setdefault(category or "name", event.name)
    getattr(log, event.level.value)(kind or "event", **fields)


class LogSink:
    """An :class:`EventSink` that only logs (the default where no fabric is at hand)."""

    logs_events: Final = True

    def __init__(self, log: FilteringBoundLogger | None = None) -> None:
        self._log = log or get_logger()

    async def emit(self, event: Event) -> None:
        log_event(self._log, event)


_E = TypeVar("_E", bound=Event)


class MemorySink:
    """An :class:`EventSink` that keeps every event (for tests and tools).

    >>> import anyio
    >>> sink = MemorySink()
    >>> anyio.run(sink.emit, Lag(name="sum", lag=3))
    >>> [e.kind for e in sink.events], sink.of(Lag)[0].lag
    (['lag'], 3)
    """

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, cls: type[_E], name: str | None = None) -> list[_E]:
        """The events of one type (and, if given, about ``name``), oldest first."""
        return [e for e in self.events if isinstance(e, cls) and (name is None or e.name == name)]


class TeeSink:
    """An :class:`EventSink` handing each event to every one of ``sinks``, in order.

    A sink that raises is logged and skipped; the others still get the event.
    It logs events if one of its sinks does.

    >>> import anyio
    >>> kept, also = MemorySink(), MemorySink()
    >>> anyio.run(TeeSink(kept, also).emit, Lag(name="sum", lag=3))
    >>> kept.events == also.events == [Lag(name="sum", lag=3)]
    True
    """

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks
        self.logs_events = any(logs_events(sink) for sink in sinks)
        self._log = get_logger()

    async def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                await sink.emit(event)
            except Exception as exc:  # one broken sink must not starve the others
                self._log.warning(
                    "event_sink_failed", kind=event.kind, name=event.name, error=repr(exc)
                )


# -- actor --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _ActorEvent(Event):
    category: ClassVar[str] = "actor"


@dataclass(frozen=True, slots=True, kw_only=True)
class Started(_ActorEvent):
    """The actor restored its checkpoint and is running; ``epoch`` is its fencing epoch."""

    kind: ClassVar[str] = "started"
    positions: Mapping[str, int]
    epoch: int
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Stopped(_ActorEvent):
    """The actor stopped when asked, after a final checkpoint."""

    kind: ClassVar[str] = "stopped"
    positions: Mapping[str, int]
    stats: Mapping[str, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Fenced(_ActorEvent):
    """A newer instance claimed the actor's checkpoint; this one stopped."""

    kind: ClassVar[str] = "fenced"
    default_level: ClassVar[Level] = Level.WARNING
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Crashed(_ActorEvent):
    """``handle`` (or the runtime) raised; ``subject``/``seq`` name the input, if any.

    ``poison`` is true once the input has failed ``max_attempts`` times;
    ``injected`` marks a fault a test injected.
    """

    kind: ClassVar[str] = "crashed"
    default_level: ClassVar[Level] = Level.WARNING
    reason: str
    subject: str | None = None
    seq: int | None = None
    attempt: int | None = None
    poison: bool = False
    injected: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HandleFailed(_ActorEvent):
    """``handle`` raised on an input and is retried in place after ``retry_in_s`` (``None``:
    it was the last attempt, the input is dead-lettered)."""

    kind: ClassVar[str] = "handle_failed"
    default_level: ClassVar[Level] = Level.WARNING
    reason: str
    subject: str
    seq: int
    attempt: int
    retry_in_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lag(_ActorEvent):
    """Messages of the inputs not yet handled (reported every second while catching up)."""

    kind: ClassVar[str] = "lag"
    lag: int
    catching_up: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CaughtUp(_ActorEvent):
    """The backlog that existed at start has been handled."""

    kind: ClassVar[str] = "caught_up"
    replayed: int
    duration_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _PolicySwitch(_ActorEvent):
    subject: str
    mode: str
    policy: str
    reason: str
    lag: int
    age_s: float | None = None
    latency_s: float | None = None
    arrival_rate: float = 0.0
    capacity: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyOn(_PolicySwitch):
    """An input's overload policy took over (``reason``: which bound was crossed)."""

    kind: ClassVar[str] = "policy_on"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyOff(_PolicySwitch):
    """An input is back to normal handling."""

    kind: ClassVar[str] = "policy_off"


@dataclass(frozen=True, slots=True, kw_only=True)
class Stall(_ActorEvent):
    """An input with a stall deadline has been silent past it."""

    kind: ClassVar[str] = "stall"
    default_level: ClassVar[Level] = Level.WARNING
    subject: str
    deadline_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StallEnd(_ActorEvent):
    """A stalled input delivered again."""

    kind: ClassVar[str] = "stall_end"
    subject: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap(_ActorEvent):
    """Items ``first..last`` of ``producer`` never reached the actor; recovery starts."""

    kind: ClassVar[str] = "gap"
    subject: str
    producer: str | None
    first: int
    last: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Lost(_ActorEvent):
    """Items neither the stream nor the producer's history still had.

    ``by`` is ``"item"`` (producer item numbers), ``"seq"`` (stream sequences)
    or ``"origin"`` (a bridge's origin sequences). ``pending``: the producer's
    history could not be asked (its site cut off, the producer away); the
    range is asked again later, and a :class:`Replayed` (``late``) or a final
    ``Lost`` (``pending`` false) settles it.
    """

    kind: ClassVar[str] = "lost"
    default_level: ClassVar[Level] = Level.WARNING
    subject: str
    producer: str | None
    first: int
    last: int
    count: int
    by: str
    pending: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Replayed(_ActorEvent):
    """Items ``first..last`` of ``producer`` were filled from its history.

    ``late``: they had been reported lost (``pending``) and were handed to
    ``handle`` when the history answered again, after newer items.
    """

    kind: ClassVar[str] = "replayed"
    subject: str
    producer: str
    first: int
    last: int
    count: int
    late: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconstructed(_ActorEvent):
    """Stand-ins for ``count`` lost items were handed to ``handle``."""

    kind: ClassVar[str] = "reconstructed"
    subject: str
    producer: str | None
    first: int
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Thinned(_ActorEvent):
    """Items ``first..last`` were left out by their producer on purpose (``Actor.leave_out``):
    not asked for, not lost; ``reconstructed`` when stand-ins for them were handed on."""

    kind: ClassVar[str] = "thinned"
    subject: str
    producer: str
    first: int
    last: int
    count: int
    reconstructed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLettered(_ActorEvent):
    """A poison input was moved to the actor's dead-letter subject."""

    kind: ClassVar[str] = "dead_letter"
    default_level: ClassVar[Level] = Level.WARNING
    subject: str
    seq: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpointed(_ActorEvent):
    """A checkpoint record was written (``version``: its KV revision; counts since this start).

    ``handled`` and ``emitted`` count inputs and outputs since this start of
    the actor; ``diaspora run`` sums them up in its periodic summary.
    """

    kind: ClassVar[str] = "checkpointed"
    version: int
    positions: Mapping[str, int]
    handled: int = 0
    emitted: int = 0


# -- supervision --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _SupervisionEvent(Event):
    """``name`` is the supervisor; ``child`` the child's id."""

    category: ClassVar[str] = "supervision"
    child: str

    def fields(self) -> dict[str, Any]:
        return {"supervisor": self.name, **Event.fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildStarted(_SupervisionEvent):
    """A child called ``started()``."""

    kind: ClassVar[str] = "started"
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StartFailed(_SupervisionEvent):
    """A child raised before ``started()``."""

    kind: ClassVar[str] = "start_failed"
    default_level: ClassVar[Level] = Level.WARNING
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Exited(_SupervisionEvent):
    """A child exited by itself (``normal``: it returned or shut down)."""

    kind: ClassVar[str] = "exited"
    reason: str
    normal: bool

    @property
    def level(self) -> Level:
        return Level.INFO if self.normal else Level.WARNING


@dataclass(frozen=True, slots=True, kw_only=True)
class Restarted(_SupervisionEvent):
    """A child was started again after ``cause`` exited (itself or a sibling)."""

    kind: ClassVar[str] = "restarted"
    incarnation: int
    attempt: int
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BackingOff(_SupervisionEvent):
    """A child's restart waits ``delay_s``."""

    kind: ClassVar[str] = "backoff"
    attempt: int
    delay_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GaveUp(_SupervisionEvent):
    """Too many restarts in the period: the supervisor fails to its parent."""

    kind: ClassVar[str] = "gave_up"
    default_level: ClassVar[Level] = Level.ERROR
    reason: str
    restarts: int
    intensity: int
    period: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Terminated(_SupervisionEvent):
    """The supervisor stopped a child (``reason``: shutdown, killed, or what it raised)."""

    kind: ClassVar[str] = "terminated"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Deleted(_SupervisionEvent):
    """``delete_child`` removed a child's spec."""

    kind: ClassVar[str] = "deleted"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ignored(_SupervisionEvent):
    """A child's start declined (OTP's ``ignore``): kept with no running child, or removed."""

    kind: ClassVar[str] = "ignored"
    removed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SelfShutdown(_SupervisionEvent):
    """The significant ``child`` exited for good: by ``policy`` the supervisor stops itself."""

    kind: ClassVar[str] = "auto_shutdown"
    policy: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStarted(_SupervisionEvent):
    """A process node's child process reported it started its subtree.

    ``standby``: the process was the parent's warm standby, not a new spawn.
    """

    kind: ClassVar[str] = "node_started"
    incarnation: int
    pid: int
    standby: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeExited(_SupervisionEvent):
    """A process node's child process exited (``reason`` as for :class:`Exited`)."""

    kind: ClassVar[str] = "node_exited"
    incarnation: int
    pid: int
    returncode: int
    reason: str
    error: str | None = None

    @property
    def level(self) -> Level:
        return Level.INFO if self.reason in ("normal", "shutdown") else Level.WARNING


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeHung(_SupervisionEvent):
    """A process node's child process missed its heartbeats and was killed."""

    kind: ClassVar[str] = "node_hung"
    default_level: ClassVar[Level] = Level.WARNING
    incarnation: int
    pid: int
    silent_s: float


# -- elastic groups and the fabric ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _GroupEvent(Event):
    category: ClassVar[str] = "scaleout"
    replicas: int
    before: int
    lag: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaledOut(_GroupEvent):
    """A keyed group grew from ``before`` to ``replicas`` replicas."""

    kind: ClassVar[str] = "scale_out"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaledIn(_GroupEvent):
    """A keyed group shrank from ``before`` to ``replicas`` replicas."""

    kind: ClassVar[str] = "scale_in"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnected(Event):
    """A fabric connection came back after ``down_s`` seconds (``url``: the server it reached)."""

    category: ClassVar[str] = "fabric"
    kind: ClassVar[str] = "reconnected"
    url: str | None
    down_s: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Fired(Event):
    """A trigger ran its ``action`` on batch ``batch`` of ``count`` messages.

    ``redelivered``: the batch was restored sealed after a crash, so the
    action may have run on it before (same ``batch`` id).
    """

    category: ClassVar[str] = "trigger"
    kind: ClassVar[str] = "fired"
    trigger: str
    batch: str
    batch_no: int
    count: int
    action: str
    redelivered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class _LinkEvent(Event):
    """About a site's degradable link (``name`` is the site)."""

    category: ClassVar[str] = "link"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkFaulted(_LinkEvent):
    """A link control put ``fault`` on the site's link (``cut_link``, ``latency``...).

    ``seconds`` is the added latency, ``jitter`` its random extra, ``rate`` a
    bandwidth cap in bytes/s; ``duration`` how long it lasts (``None``: until healed).
    """

    kind: ClassVar[str] = "faulted"
    default_level: ClassVar[Level] = Level.WARNING
    fault: str
    seconds: float | None = None
    jitter: float | None = None
    rate: float | None = None
    duration: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkHealed(_LinkEvent):
    """A fault on the site's link was lifted: ``by`` its ``timer`` or a heal ``order``."""

    kind: ClassVar[str] = "healed"
    fault: str
    by: str


# -- views -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _ViewEvent(Event):
    """About one data view (``name`` is the view actor's id, ``view`` the view's name)."""

    category: ClassVar[str] = "view"
    view: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOpened(_ViewEvent):
    """``opened`` groups were opened by the last batch of inputs; ``open_groups`` are open now."""

    kind: ClassVar[str] = "group_opened"
    default_level: ClassVar[Level] = Level.DEBUG
    opened: int
    open_groups: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupCompleted(_ViewEvent):
    """``completed`` groups were emitted by the last batch (or idle tick) as view items.

    Of those, ``partial`` were expired groups emitted incomplete (``emit_partial``)
    and ``reconstructed`` expired groups completed by the view's hook.
    """

    kind: ClassVar[str] = "group_completed"
    default_level: ClassVar[Level] = Level.DEBUG
    completed: int
    partial: int = 0
    reconstructed: int = 0
    open_groups: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupDropped(_ViewEvent):
    """An incomplete group was dropped after ``within`` seconds (``reason``: why).

    ``counts`` is how many items of each source it had; ``key`` (the key's
    values as a JSON array) and ``generation`` say which group it was.
    """

    kind: ClassVar[str] = "group_dropped"
    default_level: ClassVar[Level] = Level.WARNING
    key: str
    generation: int
    counts: Mapping[str, int]
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemStale(_ViewEvent):
    """A reference of view item ``version`` no longer resolves: the item was dropped.

    ``stream``/``seq`` is the first reference that failed. ``name`` is who
    dropped it: a consumer actor's id (its ``handle`` got
    :class:`~diaspora.errors.Stale`), or the view actor's for a group not
    emitted yet (``version`` 0).
    """

    kind: ClassVar[str] = "item_stale"
    default_level: ClassVar[Level] = Level.WARNING
    version: int
    stream: str
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Pinned(_ViewEvent):
    """``count`` references (``bytes`` in all) about to expire were copied into the view's store.

    ``held`` is the bytes the view holds after this copy, within ``budget``.
    """

    kind: ClassVar[str] = "pinned"
    count: int
    bytes: int
    held: int
    budget: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Unpinned(_ViewEvent):
    """``count`` pinned copies (``bytes``) were released.

    ``reason``: ``acked`` (every durable consumer of the output acknowledged
    the items), ``dropped`` (their group was dropped, or a previous run left
    them) or ``budget`` (the oldest group's copies made room within
    ``pin_budget``: its items may go stale).
    """

    kind: ClassVar[str] = "unpinned"
    count: int
    bytes: int
    held: int
    reason: str

    @property
    def level(self) -> Level:
        return Level.WARNING if self.reason == "budget" else Level.INFO


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewSnapshot(_ViewEvent):
    """A snapshot of the view at ``version`` (its output's sequence) was written.

    ``groups`` open groups, ``payloads`` copied payloads (``bytes``);
    ``pruned`` older snapshots removed by the retention rule.
    """

    kind: ClassVar[str] = "snapshot"
    version: int
    groups: int
    payloads: int
    bytes: int
    pruned: int = 0


# -- live migration (issue 14: migrate) ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _MigrationEvent(Event):
    """About one live migration of an actor (``name``) from one worker to another."""

    category: ClassVar[str] = "migration"
    origin: str
    to: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Migrated(_MigrationEvent):
    """The actor moved from worker ``origin`` to ``to``, paused for ``downtime_ms``.

    ``rounds`` of pre-copy (0: stop and copy), ``bytes`` of state sent in all;
    the downtime runs from the pause to the switch's answer.
    """

    kind: ClassVar[str] = "migrated"
    rounds: int
    bytes: int
    downtime_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MigrationAborted(_MigrationEvent):
    """A migration gave up at ``step``; the source kept running.

    ``step`` is ``prepare``, ``precopy``, ``pause`` or ``switch``; ``reason`` says why.
    """

    kind: ClassVar[str] = "aborted"
    default_level: ClassVar[Level] = Level.WARNING
    step: str
    reason: str
    rounds: int = 0
    bytes: int = 0


# -- pools (issue 14: pools, declared) ------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _PoolEvent(Event):
    """About one site of a pool (``name`` is the pool)."""

    category: ClassVar[str] = "pool"
    site: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Deficit(_PoolEvent):
    """A site has fewer live workers (``have``) than the pool keeps there (``want``)."""

    kind: ClassVar[str] = "deficit"
    default_level: ClassVar[Level] = Level.WARNING
    have: int
    want: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Healed(_PoolEvent):
    """A site is back at its minimum: ``have`` running workers, ``after_s`` after its deficit."""

    kind: ClassVar[str] = "healed"
    have: int
    want: int
    after_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteDegraded(_PoolEvent):
    """The pool stopped starting workers at a site.

    ``reason``: ``intensity`` (``restarts`` worker exits within ``period_s``
    seconds, more than the pool's intensity allows) or ``unreachable`` (the
    provider's health check failed). ``retry_after_s``: when it tries again
    (``None``: not until the pool restarts; an unreachable site is retried
    as soon as it answers).
    """

    kind: ClassVar[str] = "site_degraded"
    default_level: ClassVar[Level] = Level.WARNING
    reason: str
    restarts: int
    period_s: float
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Placed(_PoolEvent):
    """Pool actor ``actor`` was given to worker ``worker`` at the site."""

    kind: ClassVar[str] = "placed"
    actor: str
    worker: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Moved(_PoolEvent):
    """Movable pool actor ``actor`` left lost site ``from_site`` for ``site``."""

    kind: ClassVar[str] = "moved"
    actor: str
    from_site: str


# -- pools scaled at runtime (issue 15: a monitor's scale action) ----------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Scaled(_PoolEvent):
    """A site's minimum changed at runtime (``want``: the minimum now, within the max).

    ``by`` (a monitor's alert, say) asks for ``extra`` workers over the declared
    minimum; ``0``: its request withdrawn.
    """

    kind: ClassVar[str] = "scaled"
    by: str
    extra: int
    want: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Retired(_PoolEvent):
    """An idle worker (``worker``) of a site scaled down at runtime was stopped."""

    kind: ClassVar[str] = "retired"
    worker: str


# -- monitors (issue 15: anomaly prediction) ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _MonitorEvent(Event):
    """About one key of a monitor (``name`` is the monitor); ``alert`` numbers its alerts."""

    category: ClassVar[str] = "monitor"
    key: str
    alert: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorWarning(_MonitorEvent):
    """A monitor's condition ``when`` held (for its ``for`` seconds) at step time ``at``.

    ``metric`` is what the condition tests (``score``, ``value``, ``forecast``);
    ``predicted`` the forecast that met ``threshold`` (``None`` unless
    forecasting), ``horizon_s`` how far ahead the monitor looks, ``lead_s``
    how far ahead the forecast met the threshold (0 for a present value).
    """

    kind: ClassVar[str] = "warning"
    default_level: ClassVar[Level] = Level.WARNING
    metric: str
    value: float
    score: float
    threshold: float
    at: float
    predicted: float | None = None
    horizon_s: float | None = None
    lead_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorResolved(_MonitorEvent):
    """A warned key's condition no longer holds; ``lasted_s`` since its warning."""

    kind: ClassVar[str] = "resolved"
    metric: str
    value: float
    score: float
    at: float
    lasted_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorAction(_MonitorEvent):
    """A monitor carried out (``phase = "apply"``, on warning) or undid (``"revert"``,
    on resolve) one of its ``actions``; ``ok`` false with ``detail`` when it failed."""

    kind: ClassVar[str] = "action"
    action: str
    phase: str
    ok: bool = True
    detail: str | None = None

    @property
    def level(self) -> Level:
        return Level.INFO if self.ok else Level.WARNING


# -- resilient storage (issue 16: chunked objects across sites) --------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _StorageEvent(Event):
    """About one storage bucket (``name`` is the bucket)."""

    category: ClassVar[str] = "storage"


@dataclass(frozen=True, slots=True, kw_only=True)
class DegradedRead(_StorageEvent):
    """Chunk ``chunk`` of ``object`` was read around ``unusable`` fragments (``why``: per site)."""

    kind: ClassVar[str] = "degraded_read"
    default_level: ClassVar[Level] = Level.WARNING
    object: str
    chunk: int
    unusable: int
    why: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FragmentCorrupt(_StorageEvent):
    """Fragment ``fragment`` of a chunk, at ``site``, failed its checksum (it is never used)."""

    kind: ClassVar[str] = "fragment_corrupt"
    default_level: ClassVar[Level] = Level.WARNING
    object: str
    chunk: int
    fragment: int
    site: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FragmentRepaired(_StorageEvent):
    """A lost or corrupt fragment was written again at ``site`` (``how``: mended by a read,
    rebuilt by repair, or moved off a site that does not answer)."""

    kind: ClassVar[str] = "fragment_repaired"
    object: str
    chunk: int
    fragment: int
    site: str
    how: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RepairDone(_StorageEvent):
    """A repair pass ended: fragments ``rebuilt`` (``moved`` of them elsewhere), bytes, seconds,
    fragments ``waiting`` for their site and chunks ``lost``."""

    kind: ClassVar[str] = "repair_done"
    objects: int
    rebuilt: int
    moved: int
    bytes_read: int
    bytes_written: int
    seconds: float
    waiting: int
    lost: int

    @property
    def level(self) -> Level:
        return Level.ERROR if self.lost else Level.INFO


@dataclass(frozen=True, slots=True, kw_only=True)
class Relayout(_StorageEvent):
    """Chunk ``chunk`` of ``object`` went from layout ``old`` to ``new`` (``reason``: hot,
    hot behind slow sites, or the policy's layout for its size), moving ``moved_bytes``."""

    kind: ClassVar[str] = "relayout"
    object: str
    chunk: int
    old: str
    new: str
    reason: str
    moved_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteUnreachable(_StorageEvent):
    """Site ``site`` stopped answering the bucket's reads or writes (tried last for a while)."""

    kind: ClassVar[str] = "site_unreachable"
    default_level: ClassVar[Level] = Level.WARNING
    site: str
    error: str
