"""What a tree went through: faults with their recoveries, restarts, policy switches, alerts.

An :class:`Incident` opens with a fault (a crash, a hung node, a link fault,
an overload policy taking over, a pool deficit, a monitor's warning) and
closes with its recovery (the actor started again, the link healed, the
policy switched off, the site healed, the warning resolved), which gives
its recovery duration. Instant facts (a restart, a supervisor giving up, a
migration, a reconnect, lost items) are incidents that open and close at
once. :class:`Incidents` folds events into them, keeps the newest, and
says which alerts are active: open incidents of a warning kind, whatever
category brings them (a ``warning`` opens, a ``resolved`` of the same
category and name closes).

>>> from diaspora.events import Crashed, Started
>>> incidents = Incidents()
>>> incidents.apply(Crashed(name="root.sum", reason="boom"), 10.0)
>>> incidents.apply(Started(name="root.sum", positions={}, epoch=2, pid=7), 10.5)
>>> [(i.kind, i.who, i.recovery_s) for i in incidents.timeline]
[('crash', 'root.sum', 0.5)]
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from diaspora.events import (
    BackingOff,
    CaughtUp,
    Checkpointed,
    ChildStarted,
    Crashed,
    DeadLettered,
    Deficit,
    Event,
    Exited,
    Fired,
    GaveUp,
    GroupCompleted,
    GroupOpened,
    HandleFailed,
    Healed,
    Lag,
    LinkFaulted,
    LinkHealed,
    Lost,
    Migrated,
    MigrationAborted,
    NodeExited,
    NodeHung,
    NodeStarted,
    Pinned,
    Placed,
    PolicyOff,
    PolicyOn,
    Reconnected,
    Restarted,
    SiteDegraded,
    Started,
    StartFailed,
    Stopped,
    Terminated,
    Unpinned,
    ViewSnapshot,
)
from diaspora.observe._reader import actor_of, category_of, kind_of

__all__ = ["Incident", "Incidents"]

#: Incidents kept (the oldest are dropped first).
TIMELINE: Final = 1000
#: Kinds that open an alert, whatever their category; ``resolved`` closes it.
ALERT_KINDS: Final = frozenset({"warning", "alert", "critical"})


@dataclass(slots=True)
class Incident:
    """One fault and its recovery, or one instant fact (``end == start``)."""

    kind: str
    who: str
    start: float
    detail: str = ""
    end: float | None = None
    alert: bool = False

    @property
    def recovery_s(self) -> float | None:
        """Seconds from the fault to its recovery (``None``: not recovered yet)."""
        return None if self.end is None else round(self.end - self.start, 3)

    def view(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "who": self.who,
            "start": self.start,
            "end": self.end,
            "recovery_s": self.recovery_s,
            "detail": self.detail,
            "alert": self.alert,
            "open": self.end is None,
        }


def _fields(event: Event) -> str:
    fields = event.fields().items()
    return ", ".join(
        f"{k}={f'{v:.3g}' if isinstance(v, float) else v}"
        for k, v in fields
        if k != "supervisor" and v is not None
    )


#: Kinds that never open or close an incident (the frequent ones: skipped at once).
_NOT_INCIDENTS: Final = frozenset(
    {Checkpointed, Lag, CaughtUp, GroupOpened, GroupCompleted, Pinned, Unpinned, ViewSnapshot,
     Fired, HandleFailed, Placed, BackingOff, Terminated, Stopped}
)  # fmt: skip


class Incidents:
    """The timeline of a tree (see the module docstring)."""

    def __init__(self) -> None:
        self.timeline: deque[Incident] = deque(maxlen=TIMELINE)
        self._open: dict[tuple[str, str], Incident] = {}

    def alerts(self) -> list[Incident]:
        """Open incidents that are alerts, the newest first."""
        return sorted((i for i in self._open.values() if i.alert), key=lambda i: -i.start)

    def open(self, kind: str, who: str, at: float, detail: str, *, alert: bool = False) -> None:
        key = (kind, who)
        if key in self._open:
            return  # a second report of a fault already open (exited after crashed)
        incident = Incident(kind=kind, who=who, start=at, detail=detail, alert=alert)
        self._open[key] = incident
        self.timeline.append(incident)

    def close(self, kind: str, who: str, at: float) -> Incident | None:
        incident = self._open.pop((kind, who), None)
        if incident is not None:
            incident.end = max(at, incident.start)
        return incident

    def instant(self, kind: str, who: str, at: float, detail: str) -> None:
        self.timeline.append(Incident(kind=kind, who=who, start=at, detail=detail, end=at))

    def apply(self, event: Event, at: float) -> None:
        """Fold one event (emitted at Unix time ``at``) into the timeline."""
        if type(event) in _NOT_INCIDENTS:
            return  # the frequent reports: nothing opens or closes with them
        who = actor_of(event)
        if isinstance(event, Crashed | StartFailed | Exited):
            if not isinstance(event, Exited) or not event.normal:
                self.open("crash", who, at, event.reason)
        elif isinstance(event, NodeExited) and event.reason not in ("normal", "shutdown"):
            self.open("crash", who, at, event.error or event.reason)
        elif isinstance(event, NodeHung):
            self.open("crash", who, at, f"node hung, silent {event.silent_s:.1f}s")
        elif isinstance(event, Started | ChildStarted | NodeStarted):
            self.close("crash", who, at)
        elif isinstance(event, Restarted):
            self.instant(
                "restart", who, at, f"incarnation {event.incarnation}, cause {event.cause}"
            )
        elif isinstance(event, GaveUp):
            self.open("gave_up", event.name, at, f"{event.child}: {event.reason}", alert=True)
        elif isinstance(event, PolicyOn):
            detail = (
                f"{event.subject}: {event.mode}:{event.policy} ({event.reason}, lag {event.lag})"
            )
            self.open("policy", f"{who} {event.subject}", at, detail)
        elif isinstance(event, PolicyOff):
            self.close("policy", f"{who} {event.subject}", at)
        elif isinstance(event, LinkFaulted):
            self.open(f"link {event.fault}", event.name, at, _fields(event))
        elif isinstance(event, LinkHealed):
            self.close(f"link {event.fault}", event.name, at)
        elif isinstance(event, Deficit):
            detail = f"{event.site}: {event.have}/{event.want} workers"
            self.open("deficit", f"{event.name} {event.site}", at, detail, alert=True)
        elif isinstance(event, Healed):
            self.close("deficit", f"{event.name} {event.site}", at)
        elif isinstance(event, SiteDegraded):
            self.instant("site degraded", f"{event.name} {event.site}", at, event.reason)
        elif isinstance(event, Migrated | MigrationAborted | Reconnected | Lost | DeadLettered):
            self.instant(event.kind, who, at, _fields(event))
        else:
            self._generic(event, at)

    def _generic(self, event: Event, at: float) -> None:
        """Alerts of any category: a warning kind opens one, ``resolved`` closes it."""
        category, kind = category_of(event), kind_of(event)
        who = f"{category} {event.name}"
        if kind in ALERT_KINDS:
            self.open("alert", who, at, _fields(event), alert=True)
        elif kind == "resolved":
            self.close("alert", who, at)
