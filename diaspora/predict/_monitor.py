"""The monitor actor: a supervised, checkpointed actor that scores a stream of numbers per key.

It consumes ``spec.on`` (a stream, or an event pattern such as
``diaspora.events.actor.*.lag``), takes each message's key, time and value,
runs the key's :class:`~diaspora.predict._track.Track` (resampler, model,
alert state) and, on each completed step:

- emits ``{monitor, key, t, value, score, forecast, holds}`` to
  ``spec.scores`` if set (effectively once, like every actor output);
- on a transition, publishes the typed event
  ``diaspora.events.monitor.<name>.warning`` / ``.resolved`` and carries out
  (or undoes) the actions, each followed by a ``.action`` event.

Alerts are stored events: each is published to JetStream with a message id
made of the monitor, key, alert number and kind, so the replay that follows
a restart (the same values give the same steps) publishes nothing twice
within the events stream's duplicate window. The tracks are the actor's
checkpointed state: models survive restarts.

>>> from diaspora.predict._spec import MonitorSpec
>>> spec = MonitorSpec("lag", "diaspora.events.actor.*.lag", key="actor", value="lag")
>>> runtime = monitor_runtime(spec, fabric=None)  # type: ignore[arg-type]
>>> runtime.id, runtime.inputs
('monitor-lag', ('diaspora.events.actor.*.lag',))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from diaspora.actor import Actor, ActorRuntime
from diaspora.events import (
    Event,
    MonitorAction,
    MonitorResolved,
    MonitorWarning,
    log_event,
)
from diaspora.fabric._naming import is_event_input
from diaspora.predict import _effects
from diaspora.predict._spec import MonitorSpec
from diaspora.predict._track import Step, Track

if TYPE_CHECKING:
    from diaspora.fabric import Fabric
    from diaspora.message import Message

__all__ = ["Monitor", "monitor_runtime", "point_of"]


def _field(record: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(record, Mapping) or part not in record:
            return None
        record = record[part]
    return record


def point_of(spec: MonitorSpec, msg: Message, me: str) -> tuple[str, float, float] | None:
    """``(key, t, value)`` of a message, or ``None`` when it carries no number for this monitor."""
    if is_event_input(spec.on):
        event = msg.event
        if event.category == "monitor" and event.name == spec.name:
            return None  # our own alerts
        record: Any = {"name": event.name, event.category: event.name, **event.fields()}
    else:
        record = msg.data
    value = record if spec.value is None else _field(record, spec.value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    key = "" if spec.key is None else _field(record, spec.key)
    when = msg.timestamp if spec.time is None else _field(record, spec.time)
    if isinstance(when, bool) or not isinstance(when, int | float):
        return None
    return ("" if key is None else str(key)), float(when), float(value)


class Monitor(Actor):
    """Scores ``spec.on`` per key and alerts (see the module docstring)."""

    checkpoint_every: ClassVar[int | None] = 100
    checkpoint_interval: ClassVar[float] = 2.0

    def __init__(self, spec: MonitorSpec) -> None:
        if not isinstance(spec, MonitorSpec):
            raise TypeError(f"Monitor(spec=...) needs a MonitorSpec, got {spec!r}")
        self.spec = spec
        self.tracks: dict[str, Track] = {}
        self.published = 0  # alert and action events published by this incarnation

    def snapshot(self) -> dict[str, Any]:
        return {"tracks": {key: track.state() for key, track in self.tracks.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        self.tracks = {k: Track.from_state(self.spec, s) for k, s in state["tracks"].items()}

    async def handle(self, msg: Message) -> None:
        point = point_of(self.spec, msg, self.id)
        if point is None:
            return
        key, t, x = point
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = Track(self.spec)
        for step in track.add(t, x):
            if self.spec.scores is not None:
                await self.emit(self.spec.scores, self._score_record(key, step))
            if step.transition is not None:
                await self._transition(key, track, step)

    def _score_record(self, key: str, step: Step) -> dict[str, Any]:
        return {
            "monitor": self.spec.name, "key": key, "t": step.t, "value": step.value,
            "score": step.score, "forecast": step.forecast, "holds": step.holds,
        }  # fmt: skip

    async def _transition(self, key: str, track: Track, step: Step) -> None:
        spec, rule = self.spec, self.spec.alert
        threshold = float(
            track.model.threshold if rule.when.threshold is None else rule.when.threshold
        )
        step_s = spec.resample
        event: MonitorWarning | MonitorResolved
        if step.transition == "warning":
            event = MonitorWarning(
                name=spec.name, key=key, alert=step.alert, metric=rule.when.metric,
                value=step.value, score=step.score, threshold=threshold, at=step.t,
                predicted=step.forecast,
                horizon_s=None if rule.when.metric != "forecast" or step_s is None
                else rule.horizon * step_s,
                lead_s=None if step.lead_steps is None or step_s is None
                else step.lead_steps * step_s,
            )  # fmt: skip
        else:
            since = track.warned_at if track.warned_at is not None else step.t
            event = MonitorResolved(
                name=spec.name, key=key, alert=step.alert, metric=rule.when.metric,
                value=step.value, score=step.score, at=step.t, lasted_s=step.t - since,
            )  # fmt: skip
        await self._publish(event, f"{step.transition}")
        for i, action in enumerate(spec.actions):
            phase = "apply" if step.transition == "warning" else "revert"
            ok, detail = True, None
            try:
                if phase == "apply":
                    track.undo[i] = await _effects.apply(
                        self.fabric, action, event, track.undo.get(i)
                    )
                else:
                    await _effects.revert(self.fabric, action, event, track.undo.pop(i, None))
            except Exception as exc:  # reported, not raised: see diaspora.predict._effects
                ok, detail = False, _effects.failure(exc)
            done = MonitorAction(
                name=spec.name, key=key, alert=step.alert, action=_effects.describe(action),
                phase=phase, ok=ok, detail=detail,
            )  # fmt: skip
            await self._publish(done, f"{phase}:{i}")

    async def _publish(self, event: Event, what: str) -> None:
        """Log ``event`` and store it on its subject once (its id survives a replay)."""
        assert isinstance(event, MonitorWarning | MonitorResolved | MonitorAction)
        log_event(self.log, event)
        msg_id = f"{self.id}:{event.key}:{event.alert}:{what}"
        await self.fabric.publish(event.subject_name, event.record(), msg_id=msg_id)
        self.published += 1


def monitor_runtime(
    spec: MonitorSpec, fabric: Fabric, *, id: str | None = None, **kwargs: Any
) -> ActorRuntime:
    """The runtime of one monitor (id default ``monitor-<name>``); ``kwargs`` go to
    :class:`~diaspora.actor.ActorRuntime`."""
    return ActorRuntime(
        Monitor,
        fabric,
        id=id or f"monitor-{spec.name}",
        args={"spec": spec},
        inputs=(spec.on,),
        **kwargs,
    )
