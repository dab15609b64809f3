"""One key of a monitor: its resampler, its model and its alert state, all checkpointable.

Pure (no I/O): the monitor actor feeds each value in with :meth:`Track.add`
and gets back the steps it completed, each with its score, forecast and
alert transition. The same values in the same order give the same steps,
which is what makes a monitor's replay after a restart exact.

>>> from diaspora.predict._spec import AlertRule, Condition, MonitorSpec
>>> spec = MonitorSpec("hot", "xs", alert=AlertRule(Condition("value", ">", 5.0), for_s=2.0))
>>> track = Track(spec)
>>> [s.transition for t, x in enumerate([1, 9, 9, 9, 1]) for s in track.add(float(t), x)]
[None, None, None, 'warning', 'resolved']
>>> rule = AlertRule(Condition("value", ">", 5.0), keep_for_s=2.0)
>>> track = Track(MonitorSpec("hot", "xs", alert=rule))
>>> [s.transition for t, x in enumerate([9, 1, 9, 1, 1, 1]) for s in track.add(float(t), x)]
['warning', None, None, None, None, 'resolved']
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from diaspora.predict._models import Model, build_model
from diaspora.predict._spec import MonitorSpec

__all__ = ["Step", "Track"]

#: at most this many empty steps are filled in one go (a long silence is not replayed)
MAX_FILL: Final = 1000


@dataclass(frozen=True, slots=True)
class Step:
    """One completed step of a key."""

    t: float
    value: float
    score: float
    forecast: float | None  # the forecast the condition looked at (``None``: not forecasting)
    lead_steps: int | None  # steps ahead at which the forecast met the condition
    holds: bool
    transition: str | None  # "warning", "resolved" or None
    alert: int  # the key's alert number (the current or last one)
    since: float | None  # when the current warning began


class Track:
    """A key's state (see the module docstring); checkpointed by :meth:`state`."""

    def __init__(self, spec: MonitorSpec, model: Model | None = None) -> None:
        self.spec = spec
        self.model = model or build_model(spec.model, where=f"monitor {spec.name!r}: model")
        self.bucket: int | None = None
        self.total, self.count = 0.0, 0
        self.last: float | None = None
        self.active = False
        self.pending_since: float | None = None
        self.clear_since: float | None = None  # a warned key's condition stopped holding then
        self.warned_at: float | None = None
        self.alert = 0
        self.steps = 0
        #: what each action needs to undo itself (by action index), kept while a warning lasts
        self.undo: dict[int, Any] = {}

    def add(self, t: float, x: float) -> list[Step]:
        """Take value ``x`` seen at ``t``; the steps it completes (none, one, more after a gap)."""
        period = self.spec.resample
        if period is None:
            return [self._step(t, x)]
        b = math.floor(t / period)
        if self.bucket is None or b <= self.bucket:  # a late value joins the open step
            if self.bucket is None:
                self.bucket = b
            self.total, self.count = self.total + x, self.count + 1
            return []
        mean = self.total / self.count
        out = [self._step((self.bucket + 1) * period, mean)]
        for empty in range(self.bucket + 1, min(b, self.bucket + 1 + MAX_FILL)):
            out.append(self._step((empty + 1) * period, mean))  # a step without values repeats
        self.bucket, self.total, self.count = b, x, 1
        return out

    def _step(self, t: float, x: float) -> Step:
        model, rule = self.model, self.spec.alert
        score = model.update(t, x)
        self.steps, self.last = self.steps + 1, x
        forecast: float | None = None
        lead: int | None = None
        threshold = float(model.threshold)
        if rule.when.metric == "forecast":
            predict = model.forecast  # type: ignore[attr-defined]
            for h in range(1, rule.horizon + 1):
                forecast = float(predict(h))
                if rule.when.holds(forecast, threshold):
                    lead = h
                    break
            holds = lead is not None
        else:
            holds = rule.when.holds(score if rule.when.metric == "score" else x, threshold)
        transition = self._alert(t, holds)
        return Step(t, x, score, forecast, lead, holds, transition, self.alert, self.warned_at)

    def _alert(self, t: float, holds: bool) -> str | None:
        if self.active:
            if holds:
                self.clear_since = None
                return None
            if self.clear_since is None:
                self.clear_since = t
            if t - self.clear_since < self.spec.alert.keep_for_s:
                return None
            self.active, self.pending_since, self.clear_since = False, None, None
            return "resolved"
        if not holds:
            self.pending_since = None
            return None
        if self.pending_since is None:
            self.pending_since = t
        if t - self.pending_since >= self.spec.alert.for_s:
            self.active, self.warned_at, self.alert = True, t, self.alert + 1
            return "warning"
        return None

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state(), "bucket": self.bucket, "total": self.total,
            "count": self.count, "last": self.last, "active": self.active,
            "pending_since": self.pending_since, "warned_at": self.warned_at,
            "clear_since": self.clear_since,
            "alert": self.alert, "steps": self.steps,
            "undo": [[k, v] for k, v in self.undo.items()],
        }  # fmt: skip

    @classmethod
    def from_state(cls, spec: MonitorSpec, state: dict[str, Any]) -> Track:
        track = cls(spec)
        track.model.restore(state["model"])
        track.bucket, track.total, track.count = state["bucket"], state["total"], state["count"]
        track.last, track.active = state["last"], state["active"]
        track.pending_since, track.warned_at = state["pending_since"], state["warned_at"]
        track.alert, track.steps = state["alert"], state["steps"]
        track.clear_since = state.get("clear_since")  # absent in checkpoints before keep_for
        track.undo = {int(k): v for k, v in state["undo"]}
        return track
