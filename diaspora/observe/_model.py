"""A model of a running workflow, folded from its events: what ``top`` and the dashboard show.

:class:`WorkflowModel` takes :class:`~diaspora.observe.Observed` events one
by one (recorded or live, in stream order) and keeps the supervision tree
with a row per actor, the sites and their links, the timeline of faults and
recoveries, and the active alerts. :meth:`WorkflowModel.snapshot` gives it
all as plain data (JSON-ready); ``version`` grows with every change, so a
view redraws only when something changed.

>>> from diaspora.events import ChildStarted, Crashed, Restarted, Started
>>> from diaspora.observe import Observed
>>> model = WorkflowModel()
>>> events = [
...     Started(name="root.sum", positions={"numbers": 0}, epoch=1, pid=41),
...     Crashed(name="root.sum", reason="RuntimeError('boom')"),
...     Restarted(name="root", child="sum", incarnation=1, attempt=1, cause="sum"),
...     Started(name="root.sum", positions={"numbers": 9}, epoch=2, pid=41),
... ]
>>> for seq, event in enumerate(events, 1):
...     model.apply(Observed(seq=seq, time=100.0 + seq, event=event))
>>> snap = model.snapshot(now=105.0)
>>> [(r["id"], r["state"], r["restarts"]) for r in snap["tree"]]
[('root', 'running', 0), ('root.sum', 'running', 1)]
>>> [(i["kind"], i["recovery_s"]) for i in snap["timeline"]]
[('crash', 2.0), ('restart', 0.0)]
"""

from __future__ import annotations

import time
from typing import Any, Final

from diaspora.observe._actors import ActorRow, Actors
from diaspora.observe._incidents import Incidents
from diaspora.observe._reader import Observed, category_of
from diaspora.observe._sites import Sites

__all__ = ["WorkflowModel"]

#: Series plotted at most (the actors with the most lag first), points per series, and
#: how far back they go (seconds).
MAX_SERIES: Final = 8
MAX_POINTS: Final = 150
SERIES_WINDOW: Final = 300.0


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most ``MAX_POINTS`` of ``points``, evenly spread, the newest always kept."""
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    kept = [points[int(i * step)] for i in range(MAX_POINTS - 1)]
    return [*kept, points[-1]]


#: Kinds too frequent to count as news for a view (a redraw follows the next change anyway).
_QUIET_KINDS: Final = frozenset({"group_opened", "group_completed"})


class WorkflowModel:
    """The tree, sites, timeline and alerts of a workflow (see the module docstring).

    ``period`` is the window, in seconds, of the restart counts.
    """

    def __init__(self, *, period: float = 60.0) -> None:
        self.period = period
        self.actors = Actors()
        self.sites = Sites()
        self.incidents = Incidents()
        self.version = 0
        self.last_seq = 0
        self.events = 0
        self.categories: dict[str, int] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.pools: dict[str, dict[str, Any]] = {}
        self.connected: bool | None = None

    def apply(self, seen: Observed) -> None:
        """Fold one event into the model."""
        event, at = seen.event, seen.time
        self.last_seq = max(self.last_seq, seen.seq)
        self.events += 1
        category = category_of(event)
        self.categories[category] = self.categories.get(category, 0) + 1
        self.actors.apply(event, at)
        self.sites.apply(event, at)
        self.incidents.apply(event, at)
        if category == "view":
            self.views.setdefault(event.name, {}).update(
                {k: v for k, v in event.fields().items() if isinstance(v, int | float | str)},
                updated=at,
            )
        elif category == "pool":
            fields = event.fields()
            site = fields.get("site", "?")
            self.pools.setdefault(event.name, {})[str(site)] = {
                "last": event.kind,
                **{k: v for k, v in fields.items() if isinstance(v, int | float | str)},
                "updated": at,
            }
        if event.kind not in _QUIET_KINDS:
            self.version += 1

    def backlog(self, actor: str, lag: int, at: float) -> None:
        """What the server says an actor's consumers hold unacknowledged (polled)."""
        before = self.actors.rows.get(actor)
        previous = None if before is None else before.lag
        self.actors.backlog(actor, lag, at)
        if previous != lag:
            self.version += 1

    def leafz(self, answer: dict[str, Any], at: float) -> None:
        """A server's ``/leafz`` answer (polled)."""
        self.sites.leafz(answer, at)
        self.version += 1

    def running_inputs(self) -> dict[str, tuple[str, ...]]:
        """The inputs of each actor that is not stopped (whose backlog is worth asking)."""
        return {
            r.id: r.inputs
            for r in self.actors.rows.values()
            if r.inputs and r.state not in ("stopped", "exited", "fenced", "dead")
        }

    def tree(self) -> list[ActorRow]:
        """The rows depth first, children by id: a supervisor before its children."""
        rows = self.actors.rows
        children: dict[str | None, list[str]] = {}
        for id in sorted(rows):
            parent = rows[id].parent
            children.setdefault(parent if parent in rows else None, []).append(id)
        out: list[ActorRow] = []

        def walk(parent: str | None) -> None:
            for id in children.get(parent, []):
                out.append(rows[id])
                walk(id)

        walk(None)
        return out

    def _series(self, now: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
        """The plotted series: the actors with the most lag now (then the busiest),
        ``MAX_SERIES`` at most, their last ``SERIES_WINDOW`` seconds thinned to ``MAX_POINTS``."""
        since = now - SERIES_WINDOW
        ranked = sorted(
            (
                (-(row.lag or 0), -(row.inputs_per_s or 0.0), row.id)
                for row in self.actors.rows.values()
                if row.lag_series.points or row.rate_series.points
            ),
        )
        out = {}
        for _, _, id in ranked[:MAX_SERIES]:
            row = self.actors.rows[id]
            lag = [p for p in row.lag_series.points if p[0] >= since]
            rate = [p for p in row.rate_series.points if p[0] >= since]
            out[id] = {"lag": _thin(lag), "rate": _thin(rate)}
        return out

    def snapshot(self, *, now: float | None = None, series: bool = True) -> dict[str, Any]:
        """Everything as plain data: ``tree``, ``sites``, ``timeline``, ``alerts``, ``series``...

        ``series=False`` leaves the plotted series out (empty), for a view without plots.
        """
        now = time.time() if now is None else now
        tree = []
        for row in self.tree():
            view = row.view(now=now, period=self.period)
            view["depth"] = row.id.count(".")
            tree.append(view)
        plotted = self._series(now) if series else {}
        return {
            "now": now,
            "version": self.version,
            "events": self.events,
            "last_seq": self.last_seq,
            "connected": self.connected,
            "categories": dict(self.categories),
            "tree": tree,
            "sites": [s.view() for _, s in sorted(self.sites.rows.items())],
            "timeline": [i.view() for i in self.incidents.timeline],
            "alerts": [i.view() for i in self.incidents.alerts()],
            "series": plotted,
            "views": self.views,
            "pools": self.pools,
        }
