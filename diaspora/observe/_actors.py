"""The actors and supervisors of a running tree, as the events tell them.

One :class:`ActorRow` per actor (or other child) and per supervisor, keyed by
its full id (``root.sum``; a child of supervisor ``root`` named ``sum``).
Its parent is the id before the last dot, so the rows form the supervision
tree. :class:`Actors` folds events into them: state, process, incarnation,
restarts, rates (from the ``checkpointed`` counts), lag (from ``lag``
events and the consumers' backlog), the policies in force and the last error.

>>> from diaspora.events import Crashed, Restarted, Started
>>> actors = Actors()
>>> actors.apply(Started(name="root.sum", positions={"numbers": 0}, epoch=1, pid=42), 10.0)
>>> actors.apply(Crashed(name="root.sum", reason="ValueError('x')"), 11.0)
>>> actors.apply(Restarted(name="root", child="sum", incarnation=1, attempt=1, cause="sum"), 11.0)
>>> row = actors.rows["root.sum"]
>>> row.state, row.incarnation, row.restarts_within(60.0, now=12.0), row.last_error
('running', 1, 1, "ValueError('x')")
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from diaspora.events import (
    BackingOff,
    CaughtUp,
    Checkpointed,
    ChildStarted,
    Crashed,
    Event,
    Exited,
    Fenced,
    GaveUp,
    HandleFailed,
    Lag,
    Migrated,
    NodeExited,
    NodeHung,
    NodeStarted,
    Placed,
    PolicyOff,
    PolicyOn,
    Restarted,
    Stall,
    StallEnd,
    Started,
    StartFailed,
    Stopped,
    Terminated,
)

__all__ = ["ActorRow", "Actors", "Series"]

#: Points kept per plotted series.
SERIES_POINTS: Final = 600


@dataclass(slots=True)
class Series:
    """``(time, value)`` points of one quantity, the newest last (bounded)."""

    points: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=SERIES_POINTS))

    def add(self, at: float, value: float) -> None:
        self.points.append((at, value))


@dataclass(slots=True)
class ActorRow:
    """What is known of one actor (``kind="actor"``) or supervisor (``kind="supervisor"``)."""

    id: str
    kind: str = "actor"
    state: str = "unknown"
    pid: int | None = None
    site: str | None = None
    worker: str | None = None
    incarnation: int = 0
    restarts: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    inputs: tuple[str, ...] = ()
    inputs_per_s: float | None = None
    outputs_per_s: float | None = None
    handled: int = 0
    lag: int | None = None
    policy: dict[str, str] = field(default_factory=dict)
    last_error: str | None = None
    updated: float = 0.0
    lag_series: Series = field(default_factory=Series)
    rate_series: Series = field(default_factory=Series)
    _counts: tuple[float, int, int] | None = None  # time, handled, emitted of the last checkpoint

    @property
    def parent(self) -> str | None:
        return self.id.rpartition(".")[0] or None

    @property
    def lag_s(self) -> float | None:
        """Seconds of input behind: the lag over the input rate (``None`` when not known)."""
        if self.lag is None:
            return None
        if self.lag == 0:
            return 0.0
        if not self.inputs_per_s:
            return None
        return self.lag / self.inputs_per_s

    def restarts_within(self, period: float, *, now: float) -> int:
        """Restarts in the last ``period`` seconds before ``now``."""
        return sum(1 for t in self.restarts if t >= now - period)

    def view(self, *, now: float, period: float) -> dict[str, Any]:
        """The row as plain data (what ``top`` and the dashboard show)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "parent": self.parent,
            "state": self.state,
            "pid": self.pid,
            "site": self.site,
            "worker": self.worker,
            "incarnation": self.incarnation,
            "restarts": self.restarts_within(period, now=now),
            "restarts_total": len(self.restarts),
            "inputs": list(self.inputs),
            "inputs_per_s": _round(self.inputs_per_s),
            "outputs_per_s": _round(self.outputs_per_s),
            "handled": self.handled,
            "lag": self.lag,
            "lag_s": _round(self.lag_s),
            "policy": dict(self.policy),
            "last_error": self.last_error,
            "updated": self.updated,
        }


def _normal(event: Exited | NodeExited) -> bool:
    """Whether a child's exit was normal (it returned or shut down)."""
    if isinstance(event, Exited):
        return event.normal
    return event.reason in ("normal", "shutdown")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


class Actors:
    """The rows of a tree, folded from its events (see the module docstring)."""

    def __init__(self) -> None:
        self.rows: dict[str, ActorRow] = {}

    def row(self, id: str, kind: str = "actor") -> ActorRow:
        """The row of ``id`` (made, with its ancestors as supervisors, when new)."""
        row = self.rows.get(id)
        if row is None:
            row = self.rows[id] = ActorRow(id=id, kind=kind)
            parent = row.parent
            if parent is not None and parent not in self.rows:
                self.row(parent, "supervisor").state = "running"
        elif kind == "supervisor" and row.kind != "supervisor":
            row.kind = "supervisor"
        if row.kind == "supervisor" and row.state == "unknown":
            row.state = "running"
        return row

    def apply(self, event: Event, at: float) -> None:
        """Fold one event (emitted at Unix time ``at``) into the rows."""
        child = getattr(event, "child", None)
        if event.category == "supervision" and isinstance(child, str):
            self.row(event.name, "supervisor").updated = at
            self._supervision(event, self.row(f"{event.name}.{child}"), at)
        elif event.category == "actor":
            self._actor(event, self.row(event.name), at)
        elif isinstance(event, Placed):
            row = self.row(event.actor)
            row.site, row.worker, row.updated = event.site, event.worker, at
        elif isinstance(event, Migrated):
            row = self.row(event.name)
            row.worker, row.updated = event.to, at

    def backlog(self, actor: str, lag: int, at: float) -> None:
        """What the server says ``actor``'s consumers hold unacknowledged."""
        row = self.rows.get(actor)
        if row is not None and row.state not in ("stopped", "exited"):
            row.lag = lag
            row.lag_series.add(at, lag)

    def _supervision(self, event: Event, row: ActorRow, at: float) -> None:
        row.updated = at
        if isinstance(event, ChildStarted):
            row.state, row.incarnation = "running", event.incarnation
        elif isinstance(event, NodeStarted):
            row.state, row.pid, row.incarnation = "running", event.pid, event.incarnation
        elif isinstance(event, Restarted):  # emitted once the child runs again
            row.state, row.incarnation = "running", event.incarnation
            row.restarts.append(at)
        elif isinstance(event, BackingOff):
            row.state = "backoff"
        elif isinstance(event, Exited | NodeExited):
            normal = _normal(event)
            row.state = "exited" if normal else "crashed"
            if not normal:
                row.last_error = getattr(event, "error", None) or event.reason
        elif isinstance(event, StartFailed):
            row.state, row.last_error = "crashed", event.reason
        elif isinstance(event, NodeHung):
            row.state, row.last_error = "hung", f"silent {event.silent_s:.1f}s"
        elif isinstance(event, GaveUp):
            row.state, row.last_error = "dead", event.reason
            sup = self.row(event.name, "supervisor")
            sup.state, sup.last_error = "gave_up", event.reason
        elif isinstance(event, Terminated):
            row.state = "stopped"

    def _actor(self, event: Event, row: ActorRow, at: float) -> None:
        row.updated = at
        kind = type(event)
        if kind is Checkpointed:  # the most frequent two first
            self._rates(row, event, at)  # type: ignore[arg-type]
        elif kind is Lag:
            row.lag = event.lag  # type: ignore[attr-defined]
            row.lag_series.add(at, row.lag)
        elif isinstance(event, Started):
            row.state, row.pid = "running", event.pid
            row.inputs = tuple(event.positions)
            row._counts = (at, 0, 0)
        elif isinstance(event, Crashed):
            row.state, row.last_error = "crashed", event.reason
        elif isinstance(event, HandleFailed):
            row.last_error = f"{event.reason} (retry {event.attempt})"
        elif isinstance(event, Stopped | Fenced):
            row.state = "stopped" if isinstance(event, Stopped) else "fenced"
            row.inputs_per_s = row.outputs_per_s = None
        elif isinstance(event, Lag):
            row.lag = event.lag
            row.lag_series.add(at, event.lag)
        elif isinstance(event, CaughtUp):
            row.lag = 0
            row.lag_series.add(at, 0)
        elif isinstance(event, PolicyOn):
            row.policy[event.subject] = f"{event.mode}:{event.policy}"
            row.lag_series.add(at, event.lag)
        elif isinstance(event, PolicyOff):
            row.policy.pop(event.subject, None)
        elif isinstance(event, Stall):
            row.state = "stalled"
        elif isinstance(event, StallEnd) and row.state == "stalled":
            row.state = "running"
        elif isinstance(event, Checkpointed):
            self._rates(row, event, at)

    def _rates(self, row: ActorRow, event: Checkpointed, at: float) -> None:
        last = row._counts
        row._counts = (at, event.handled, event.emitted)
        if last is None or event.handled < last[1]:
            return  # the first counts seen, or a new start: no interval yet
        row.handled += event.handled - last[1]
        dt = at - last[0]
        if dt <= 0:
            return
        row.inputs_per_s = (event.handled - last[1]) / dt
        row.outputs_per_s = (event.emitted - last[2]) / dt
        row.rate_series.add(at, row.inputs_per_s)
