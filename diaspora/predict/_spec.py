"""A monitor's declaration: what to watch, which model, when to warn, what to do.

One schema for TOML and Python: ``MonitorSpec.from_mapping(table)`` reads a
``[[monitors]]`` table into the same value a Python user builds.

>>> spec = MonitorSpec.from_mapping({
...     "name": "lagging", "on": "diaspora.events.actor.*.lag", "key": "actor", "value": "lag",
...     "resample": 1.0, "model": {"kind": "ewma_z", "alpha": 0.05},
...     "alert": {"when": "forecast > 5000", "for": 3.0, "horizon": 30},
...     "actions": ["policy:edge1.patterns=decimate(4)"],
... })
>>> spec.alert.when, spec.alert.horizon
(Condition(metric='forecast', op='>', threshold=5000.0), 30)
>>> spec.actions[0]
PolicyAction(subject='edge1.patterns', policy='decimate(4)')
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from diaspora._importpath import resolve
from diaspora.errors import ConfigError
from diaspora.fabric._naming import check_input, check_subject
from diaspora.predict._models import build_model
from diaspora.streams._qos import OverloadPolicy

__all__ = [
    "Action",
    "AlertRule",
    "CallAction",
    "Condition",
    "MigrateAction",
    "MonitorSpec",
    "PolicyAction",
    "ScaleAction",
    "parse_action",
    "parse_policy",
]

_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}  # fmt: skip
_WHEN = re.compile(r"^\s*(score|value|forecast)\s*(>=|<=|>|<)\s*(\S+)\s*$")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_KEYS: Final = frozenset(
    {"name", "on", "key", "value", "time", "resample", "model", "alert", "actions", "scores"}
)
_ALERT_KEYS: Final = frozenset({"when", "for", "horizon", "keep_for"})


@dataclass(frozen=True, slots=True)
class Condition:
    """``<metric> <op> <threshold>``: metric ``score``, ``value`` or ``forecast``.

    ``threshold`` ``None`` stands for the model's own threshold (``score >= threshold``).
    """

    metric: str
    op: str
    threshold: float | None

    @classmethod
    def parse(cls, text: object, where: str) -> Condition:
        match = _WHEN.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(
                f"{where}: {text!r} is not a condition like 'score >= threshold', "
                "'value > 100' or 'forecast > 5000' (metric score, value or forecast; "
                "op >, >=, <, <=)"
            )
        metric, op, rhs = match.groups()
        if rhs == "threshold":
            return cls(metric, op, None)
        try:
            return cls(metric, op, float(rhs))
        except ValueError:
            raise ConfigError(f"{where}: {rhs!r} is neither a number nor 'threshold'") from None

    def holds(self, x: float, model_threshold: float) -> bool:
        limit = model_threshold if self.threshold is None else self.threshold
        return _OPS[self.op](x, limit)

    def __str__(self) -> str:
        rhs = "threshold" if self.threshold is None else f"{self.threshold:g}"
        return f"{self.metric} {self.op} {rhs}"


@dataclass(frozen=True, slots=True)
class AlertRule:
    """When a key warns: ``when`` held for ``for_s`` seconds (0: at once).

    ``horizon``: steps ahead a ``forecast`` condition looks (each step one
    ``resample`` period); the warning fires if the forecast meets the
    condition at any step up to it. ``keep_for_s``: seconds the condition must
    have stopped holding before the warning resolves (Prometheus'
    ``keep_firing_for``; 0: at the first step it no longer holds), so an action
    that works does not undo itself at once.
    """

    when: Condition = field(default_factory=lambda: Condition("score", ">=", None))
    for_s: float = 0.0
    horizon: int = 1
    keep_for_s: float = 0.0

    @classmethod
    def from_mapping(cls, table: object, where: str) -> AlertRule:
        if table is None:
            return cls()
        if not isinstance(table, Mapping):
            raise ConfigError(f'{where}: {table!r} is not a table like {{ when = "score >= 4" }}')
        unknown = set(table) - _ALERT_KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown keys {sorted(unknown)} (allowed: when, for, horizon, keep_for)"
            )
        when = Condition.parse(table.get("when", "score >= threshold"), f"{where}.when")
        for_s = table.get("for", 0.0)
        if not isinstance(for_s, int | float) or isinstance(for_s, bool) or for_s < 0:
            raise ConfigError(f"{where}.for: {for_s!r} must be seconds >= 0")
        horizon = table.get("horizon", 1)
        if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
            raise ConfigError(f"{where}.horizon: {horizon!r} must be a whole number of steps >= 1")
        keep = table.get("keep_for", 0.0)
        if not isinstance(keep, int | float) or isinstance(keep, bool) or keep < 0:
            raise ConfigError(f"{where}.keep_for: {keep!r} must be seconds >= 0")
        return cls(when, float(for_s), horizon, float(keep))


@dataclass(frozen=True, slots=True)
class PolicyAction:
    """Switch ``subject``'s overload policy while the alert lasts: ``policy:<subject>=<policy>``."""

    subject: str
    policy: str

    def overload_policy(self) -> OverloadPolicy:
        return parse_policy(self.policy, f"policy:{self.subject}")


@dataclass(frozen=True, slots=True)
class MigrateAction:
    """Move ``actor`` to worker ``to`` on warning, back to ``back`` on resolve
    (``migrate:<actor>=<to>[,<back>]``)."""

    actor: str
    to: str
    back: str | None = None


@dataclass(frozen=True, slots=True)
class ScaleAction:
    """Ask pool ``pool`` for ``extra`` workers over ``site``'s minimum while the alert lasts
    (``scale:<pool>.<site>=+<extra>``; :func:`diaspora.compute.scale_pool`)."""

    pool: str
    site: str
    extra: int


@dataclass(frozen=True, slots=True)
class CallAction:
    """A user callable (``call:pkg.mod:fn``): ``fn(alert)`` on warning and on resolve, sync
    or async; ``alert.kind`` says which (``"warning"`` / ``"resolved"``)."""

    path: str

    def load(self, where: str) -> Callable[..., Any]:
        fn = resolve(self.path, where=where)
        if not callable(fn):
            raise ConfigError(f"{where}: {self.path!r} is not callable")
        return fn  # type: ignore[no-any-return]


Action = PolicyAction | MigrateAction | ScaleAction | CallAction

_SCALE = re.compile(r"^\s*([-_A-Za-z0-9]+)\.([-_A-Za-z0-9]+)\s*=\s*\+\s*([0-9]+)\s*$")

_POLICY = re.compile(r"^\s*([a-z_]+)\s*(?:\(\s*([^)]*)\s*\))?\s*$")


def parse_policy(text: str, where: str) -> OverloadPolicy:
    """A policy as an action writes it: ``decimate(4)``, ``aggregate(8, max)``, ``drop_oldest``...

    >>> parse_policy("decimate(4)", "p").k
    4
    """
    match = _POLICY.match(text)
    if match is None:
        raise ConfigError(f"{where}: {text!r} is not a policy like 'decimate(4)' or 'drop_oldest'")
    kind, args = match.group(1), [a.strip() for a in (match.group(2) or "").split(",") if a.strip()]
    config: dict[str, Any] = {"kind": kind}
    try:
        if kind == "decimate" and args:
            config["k"] = int(args[0])
        elif kind == "aggregate" and args:
            config["n"] = int(args[0])
            if len(args) > 1:
                config["fn"] = args[1]
        elif kind == "scale_out" and args:
            config["max_replicas"] = int(args[0])
    except ValueError:
        raise ConfigError(f"{where}: {text!r}: the policy's arguments must be integers") from None
    return OverloadPolicy.from_config(config, where)


def parse_action(text: object, where: str) -> Action:
    """One ``actions`` entry: ``policy:<subject>=<policy>``, ``migrate:<actor>=<to>[,<back>]``,
    ``scale:<pool>.<site>=+<workers>`` or ``call:pkg.mod:fn``."""
    kind, _, rest = text.partition(":") if isinstance(text, str) else ("", "", "")
    if kind == "policy" and "=" in rest:
        subject, _, policy = rest.partition("=")
        action = PolicyAction(check_subject(subject.strip(), where=where), policy.strip())
        parse_policy(action.policy, f"{where}: policy")  # fails now if it is not a policy
        return action
    if kind == "migrate" and "=" in rest:
        actor, _, targets = rest.partition("=")
        to, _, back = targets.partition(",")
        if not actor.strip() or not to.strip():
            raise ConfigError(f"{where}: {text!r}: migrate:<actor>=<worker>[,<worker back>]")
        return MigrateAction(actor.strip(), to.strip(), back.strip() or None)
    if kind == "scale":
        match = _SCALE.match(rest)
        if match is None or int(match.group(3)) < 1:
            raise ConfigError(
                f"{where}: {text!r}: scale:<pool>.<site>=+<workers> (e.g. 'scale:recon.hpc=+2': "
                "two workers over the site's minimum while the alert lasts)"
            )
        return ScaleAction(match.group(1), match.group(2), int(match.group(3)))
    if kind == "call" and rest:
        return CallAction(rest.strip())
    raise ConfigError(
        f"{where}: {text!r} is not an action: 'policy:<subject>=<policy>' (e.g. "
        "'policy:edge1.patterns=decimate(4)'), 'migrate:<actor>=<worker>[,<back>]', "
        "'scale:<pool>.<site>=+<workers>' or 'call:pkg.mod:fn'"
    )


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    """One monitor (see docs/predict.md for every field).

    - ``on``: a stream subject, or an event pattern under ``diaspora.events.``.
    - ``key``: the field that picks a model (one per key; ``None``: one model).
      For an event, ``name`` and the event's category (``actor``...) are who
      the event is about.
    - ``value``: the field holding the number (``None``: the message is the number).
    - ``time``: the field holding the time in seconds (``None``: the stream's timestamp).
    - ``resample``: seconds per step (``None``: each value is a step); a step's
      value is the mean of its values; a step with none repeats the last one.
    - ``scores``: a subject that gets every step's ``{key, t, value, score, forecast}``.
    """

    name: str
    on: str
    key: str | None = None
    value: str | None = None
    time: str | None = None
    resample: float | None = None
    model: Mapping[str, Any] = field(default_factory=lambda: {"kind": "ewma_z"})
    alert: AlertRule = field(default_factory=AlertRule)
    actions: tuple[Action, ...] = ()
    scores: str | None = None

    def __post_init__(self) -> None:
        where = f"monitor {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"monitors.name: {self.name!r} must be letters, digits, '_' or '-'")
        check_input(self.on, where=f"{where}: on")
        if self.resample is not None and not self.resample > 0:
            raise ConfigError(f"{where}: resample: {self.resample!r} must be seconds > 0")
        if self.scores is not None:
            check_subject(self.scores, where=f"{where}: scores")
        object.__setattr__(self, "model", dict(self.model))
        object.__setattr__(self, "actions", tuple(self.actions))
        model = build_model(self.model, where=f"{where}: model")
        if self.alert.when.metric == "forecast" and not callable(getattr(model, "forecast", None)):
            raise ConfigError(
                f"{where}: alert.when {str(self.alert.when)!r}: model {self.model.get('kind')!r} "
                "does not forecast (use ewma_z, gaussian, lstm or a model with forecast(h))"
            )

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "monitors") -> MonitorSpec:
        """The spec of a ``[[monitors]]`` table; errors name ``where`` and the field."""
        unknown = set(table) - _KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
        for required in ("name", "on"):
            if not isinstance(table.get(required), str):
                raise ConfigError(f"{where}.{required}: required, a string")
        name = table["name"]
        for key in ("key", "value", "time", "scores"):
            if key in table and not isinstance(table[key], str):
                raise ConfigError(f"{where}.{key}: {table[key]!r} must be a string (a field path)")
        resample = table.get("resample")
        if resample is not None and (not isinstance(resample, int | float) or resample <= 0):
            raise ConfigError(f"{where}.resample: {resample!r} must be seconds > 0")
        model = table.get("model", {"kind": "ewma_z"})
        if isinstance(model, str):
            model = {"kind": model}
        if not isinstance(model, Mapping):
            raise ConfigError(f'{where}.model: {model!r} is not a table like {{ kind = "ewma_z" }}')
        actions = table.get("actions", [])
        if not isinstance(actions, Sequence) or isinstance(actions, str):
            raise ConfigError(f"{where}.actions: expected an array of strings")
        try:
            return cls(
                name=name,
                on=table["on"],
                key=table.get("key"),
                value=table.get("value"),
                time=table.get("time"),
                resample=None if resample is None else float(resample),
                model=model,
                alert=AlertRule.from_mapping(table.get("alert"), f"{where}.alert"),
                actions=tuple(
                    parse_action(a, f"{where}.actions[{i}]") for i, a in enumerate(actions)
                ),
                scores=table.get("scores"),
            )
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(
                message if message.startswith(where) else f"{where}: {message}"
            ) from exc
