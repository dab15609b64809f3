"""What a trigger is: :class:`TriggerSpec`, its predicate, start position and action.

One schema for Python and the workflow file: :meth:`TriggerSpec.from_mapping`
reads a ``[[triggers]]`` table into the same values a Python user builds.

>>> spec = TriggerSpec.from_mapping({
...     "name": "hot",
...     "subject": "readings",
...     "where": {"data.level": {">": 3}},
...     "batch": {"size": 10, "window": 2.0},
...     "action": {"publish": "alerts"},
... })
>>> spec.batch_size, spec.window, spec.action
(10, 2.0, PublishAction(subject='alerts'))
>>> spec.where.matches(Message(data={"level": 5}, subject="readings", seq=1))
True
"""

from __future__ import annotations

import datetime
import enum
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from diaspora._importpath import resolve
from diaspora.errors import ConfigError
from diaspora.fabric._naming import check_input, check_subject
from diaspora.message import Message
from diaspora.streams._qos import OverloadPolicy
from diaspora.supervision._spec import check_id

__all__ = [
    "Action",
    "CallAction",
    "Condition",
    "EventAction",
    "PublishAction",
    "QosAction",
    "Start",
    "StartAt",
    "StartChildAction",
    "TriggerSpec",
    "Where",
]

_ROOTS: Final = ("data", "headers", "subject", "seq", "timestamp")
_KEYS: Final = ("name", "subject", "where", "predicate", "batch", "start", "action")
_BATCH_KEYS: Final = ("size", "window")
_MISSING: Final = object()


def _matches(value: Any, pattern: Any) -> bool:
    return isinstance(value, str) and re.search(pattern, value) is not None


_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "in": lambda value, choices: value in choices,
    "not_in": lambda value, choices: value not in choices,
    "matches": _matches,
}


@dataclass(frozen=True, slots=True)
class Condition:
    """One test of a message field: ``Condition("data.level", ">", 3)``.

    ``field`` is ``data`` (or ``data.<key>.<key>...`` into a mapping),
    ``headers.<Name>``, ``subject``, ``seq`` or ``timestamp``. ``op`` is one
    of ``== != > >= < <= in not_in matches exists``; a missing field fails
    every test but ``exists = false``, and so does a comparison of unlike types.
    """

    field: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        root = self.field.split(".", 1)[0]
        if root not in _ROOTS or (root == "headers" and "." not in self.field):
            raise ConfigError(
                f"where.{self.field}: not a message field: use data[.<key>...], "
                "headers.<Name>, subject, seq or timestamp"
            )
        if self.op != "exists" and self.op not in _OPS:
            raise ConfigError(
                f"where.{self.field}: unknown test {self.op!r} "
                f"(known: {', '.join([*_OPS, 'exists'])})"
            )
        if self.op in ("in", "not_in") and not isinstance(self.value, list | tuple):
            raise ConfigError(f"where.{self.field}.{self.op}: {self.value!r} is not a list")
        if self.op == "exists" and not isinstance(self.value, bool):
            raise ConfigError(f"where.{self.field}.exists: {self.value!r} is not true or false")
        if self.op == "matches":
            try:
                re.compile(self.value)
            except (re.error, TypeError) as exc:
                raise ConfigError(
                    f"where.{self.field}.matches: {self.value!r} is not a regex: {exc}"
                ) from None

    def test(self, msg: Message) -> bool:
        value = _lookup(msg, self.field)
        if self.op == "exists":
            return (value is not _MISSING) is self.value
        if value is _MISSING:
            return False
        try:
            return bool(_OPS[self.op](value, self.value))
        except TypeError:
            return False


def _lookup(msg: Message, path: str) -> Any:
    root, _, rest = path.partition(".")
    if root == "headers":
        return msg.headers.get(rest, _MISSING)
    value: Any = getattr(msg, root)
    if not rest:
        return value
    for key in rest.split("."):
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
    return value


@dataclass(frozen=True, slots=True)
class Where:
    """All conditions hold (an empty ``Where`` matches every message).

    ``Where.from_mapping({"data.level": {">": 3}, "headers.Diaspora-Actor": "root.sum"})``:
    a bare value tests equality; a table holds several tests of one field.
    """

    conditions: tuple[Condition, ...] = ()

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "where") -> Where:
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: {table!r} is not a table of field = test")
        out = []
        for name, test in table.items():
            tests = test if isinstance(test, Mapping) else {"==": test}
            if not tests:
                raise ConfigError(f"{where}.{name}: an empty table tests nothing")
            for op, value in tests.items():
                op = "==" if op == "=" else op
                try:
                    out.append(Condition(str(name), str(op), value))
                except ConfigError as exc:
                    raise ConfigError(f"{where}{str(exc).removeprefix('where')}") from None
        return cls(tuple(out))

    def matches(self, msg: Message) -> bool:
        return all(condition.test(msg) for condition in self.conditions)


class Start(enum.Enum):
    """Where a trigger starts reading its subject the first time it runs."""

    ALL = "all"  # everything the stream holds
    NEW = "new"  # only what arrives after the first start
    SEQ = "seq"  # from a stream sequence on
    TIME = "time"  # from messages stored at or after a Unix time


@dataclass(frozen=True, slots=True)
class StartAt:
    """``StartAt()`` (all), ``StartAt(Start.NEW)``, ``StartAt(Start.SEQ, 120)``,
    ``StartAt(Start.TIME, 1.7e9)``. Kept in the checkpoint: a restart resumes."""

    kind: Start = Start.ALL
    value: float | None = None

    def __post_init__(self) -> None:
        needs = self.kind in (Start.SEQ, Start.TIME)
        if needs and (
            isinstance(self.value, bool)
            or not isinstance(self.value, int | float)
            or not math.isfinite(self.value)
            or self.value < 0
        ):
            raise ConfigError(f"start.{self.kind.value}: {self.value!r} is not a number >= 0")
        if not needs and self.value is not None:
            raise ConfigError(f"start: {self.kind.value!r} takes no value")

    @classmethod
    def from_config(cls, value: object, where: str = "start") -> StartAt:
        """``"all"``, ``"new"``, ``{seq = 120}`` or ``{time = <datetime or Unix seconds>}``."""
        if value in ("all", "new"):
            return cls(Start(value))
        if isinstance(value, Mapping) and len(value) == 1:
            ((key, raw),) = value.items()
            if key in ("seq", "time"):
                if isinstance(raw, datetime.datetime):
                    if raw.tzinfo is None:
                        raise ConfigError(f"{where}.time: {raw} has no time zone (add Z)")
                    raw = raw.timestamp()
                try:
                    return cls(Start(key), raw)
                except ConfigError as exc:
                    raise ConfigError(f"{where}{str(exc).removeprefix('start')}") from None
        raise ConfigError(
            f"{where}: {value!r} is not 'all', 'new', {{ seq = <n> }} or {{ time = <datetime> }}"
        )


@dataclass(frozen=True, slots=True)
class CallAction:
    """Call ``target`` (an import path ``"pkg.mod:fn"``, or the function) with
    ``(batch, context)``; sync or async. Delivery is at least once: dedupe on
    ``context.batch_id`` (see docs/triggers.md)."""

    kind: ClassVar[str] = "call"
    target: str | Callable[..., Any]

    def load(self, where: str = "action.call") -> Callable[..., Any]:
        fn = resolve(self.target, where=where) if isinstance(self.target, str) else self.target
        if not callable(fn):
            raise ConfigError(f"{where}: {self.target!r} is not callable")
        return fn


@dataclass(frozen=True, slots=True)
class PublishAction:
    """Publish one message per batch to ``subject``, effectively once (``Nats-Msg-Id``)."""

    kind: ClassVar[str] = "publish"
    subject: str

    def __post_init__(self) -> None:
        check_subject(self.subject, where="action.publish")


@dataclass(frozen=True, slots=True)
class StartChildAction:
    """Ask the running tree's ``supervisor`` (a ``simple_one_for_one`` one, by its dotted
    path) to start a child with ``args`` merged with ``{"batch": <the batch as data>}``."""

    kind: ClassVar[str] = "start_child"
    supervisor: str
    args: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        check_subject(self.supervisor, where="action.start_child")
        if not isinstance(self.args, Mapping):
            raise ConfigError(f"action.args: {self.args!r} is not a table")
        object.__setattr__(self, "args", dict(self.args))


@dataclass(frozen=True, slots=True)
class QosAction:
    """Switch ``subject``'s declared QoS policy to ``policy`` (its other bounds kept)."""

    kind: ClassVar[str] = "qos"
    subject: str
    policy: OverloadPolicy

    def __post_init__(self) -> None:
        check_subject(self.subject, where="action.qos")
        if not isinstance(self.policy, OverloadPolicy):
            raise ConfigError(f"action.policy: {self.policy!r} is not an OverloadPolicy")


@dataclass(frozen=True, slots=True)
class EventAction:
    """Nothing but the ``trigger.<actor>.fired`` event every firing publishes (best effort,
    as every event is: use :class:`PublishAction` for a stored, exactly-once record)."""

    kind: ClassVar[str] = "event"


Action = CallAction | PublishAction | StartChildAction | QosAction | EventAction

_ACTION_KEYS: Final = {
    "call": frozenset({"call"}),
    "publish": frozenset({"publish"}),
    "start_child": frozenset({"start_child", "args", "timeout"}),
    "qos": frozenset({"qos", "policy"}),
    "event": frozenset({"event"}),
}


_ACTIONS: Final = (CallAction, PublishAction, StartChildAction, QosAction, EventAction)
_ACTION_NAMES: Final = ", ".join(_ACTION_KEYS)


def action_from_config(value: object, where: str = "action") -> Action:
    """``{call = "pkg.mod:fn"}``, ``{publish = "<subject>"}``,
    ``{start_child = "<supervisor path>", args = {...}}``,
    ``{qos = "<subject>", policy = <policy>}`` or ``{event = true}``."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {value!r} is not a table ({_ACTION_NAMES})")
    kinds = [key for key in _ACTION_KEYS if key in value]
    if len(kinds) != 1:
        raise ConfigError(
            f"{where}: needs exactly one of {_ACTION_NAMES} (got {', '.join(kinds) or 'none'})"
        )
    kind = kinds[0]
    for key in value:
        if key not in _ACTION_KEYS[kind]:
            raise ConfigError(
                f"{where}.{key}: unknown key for a {kind} action "
                f"(known: {', '.join(sorted(_ACTION_KEYS[kind]))})"
            )
    try:
        if kind == "call":
            call = CallAction(value["call"])
            call.load(f"{where}.call")
            return call
        if kind == "publish":
            return PublishAction(value["publish"])
        if kind == "event":
            if value["event"] is not True:
                raise ConfigError(f"{where}.event: {value['event']!r}: write event = true")
            return EventAction()
        if kind == "start_child":
            return StartChildAction(
                value["start_child"], value.get("args", {}), value.get("timeout", 10.0)
            )
        if "policy" not in value:
            raise ConfigError(f"{where}.policy: required for a qos action")
        policy = OverloadPolicy.from_config(value["policy"], "action.policy")
        return QosAction(value["qos"], policy)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(
            f"{where}{message.removeprefix('action')}" if message.startswith("action") else message
        ) from None


@dataclass(frozen=True, slots=True)
class TriggerSpec:
    """One trigger: which messages of ``subject`` fire ``action``, in which batches.

    ``subject`` is a stream subject or an event pattern (``diaspora.events.actor.*.lag``).
    A message fires if ``where`` matches and ``predicate`` (an import path to
    ``fn(message) -> bool``, or the function) says so. Batches hold
    ``batch_size`` messages, or fewer once ``window`` seconds have passed since
    the first (``None``: no window). ``start`` says where the first run begins.
    """

    name: str
    subject: str
    action: Action
    where: Where = field(default_factory=Where)
    predicate: str | Callable[[Message], bool] | None = None
    batch_size: int = 1
    window: float | None = None
    start: StartAt = field(default_factory=StartAt)

    def __post_init__(self) -> None:
        check_id(self.name, "trigger.name")
        check_input(self.subject, where=f"trigger {self.name!r}: subject")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ConfigError(f"trigger {self.name!r}: batch.size {self.batch_size!r} not an int")
        if self.batch_size < 1:
            raise ConfigError(f"trigger {self.name!r}: batch.size {self.batch_size} must be >= 1")
        if self.window is not None and (
            isinstance(self.window, bool)
            or not isinstance(self.window, int | float)
            or not math.isfinite(self.window)
            or self.window <= 0
        ):
            raise ConfigError(
                f"trigger {self.name!r}: batch.window {self.window!r} is not a number of "
                "seconds > 0"
            )
        if not isinstance(self.action, _ACTIONS):
            raise ConfigError(f"trigger {self.name!r}: action {self.action!r} is not an action")
        if not isinstance(self.where, Where):
            raise ConfigError(f"trigger {self.name!r}: where {self.where!r} is not a Where")

    def load_predicate(self) -> Callable[[Message], bool] | None:
        """The ``predicate`` function (imported if given by path)."""
        if self.predicate is None or callable(self.predicate):
            return self.predicate
        fn = resolve(self.predicate, where=f"trigger {self.name!r}: predicate")
        if not callable(fn):
            raise ConfigError(f"trigger {self.name!r}: predicate {self.predicate!r} not callable")
        return fn  # type: ignore[no-any-return]

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], where: str = "trigger") -> TriggerSpec:
        """Build from a ``[[triggers]]`` table; errors start with ``where``."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: {table!r} is not a table")
        for key in table:
            if key not in _KEYS:
                raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(_KEYS)})")
        for key in ("name", "subject", "action"):
            if key not in table:
                raise ConfigError(f"{where}: missing required key {key!r}")
        name = check_id(table["name"], f"{where}.name")
        subject = check_input(table["subject"], where=f"{where}.subject")
        action = action_from_config(table["action"], f"{where}.action")
        where_ = Where.from_mapping(table.get("where", {}), f"{where}.where")
        batch = table.get("batch", {})
        if not isinstance(batch, Mapping):
            raise ConfigError(f"{where}.batch: {batch!r} is not a table (size, window)")
        for key in batch:
            if key not in _BATCH_KEYS:
                raise ConfigError(f"{where}.batch.{key}: unknown key (known: size, window)")
        start = StartAt.from_config(table.get("start", "all"), f"{where}.start")
        predicate = table.get("predicate")
        if predicate is not None and not isinstance(predicate, str):
            raise ConfigError(f"{where}.predicate: {predicate!r} is not an import path")
        try:
            spec = cls(
                name,
                subject,
                action,
                where_,
                predicate,
                batch.get("size", 1),
                batch.get("window"),
                start,
            )
        except ConfigError as exc:
            message = str(exc).replace(f"trigger {name!r}: ", "")
            raise ConfigError(f"{where}.{message}") from None
        if predicate is not None:
            resolve(predicate, where=f"{where}.predicate")
        return spec


def batch_record(batch: Sequence[Message]) -> list[dict[str, Any]]:
    """A batch as plain data (what the publish and start-child actions send)."""
    return [
        {
            "subject": m.subject,
            "seq": m.seq,
            "timestamp": m.timestamp,
            "headers": dict(m.headers),
            "data": m.data,
        }
        for m in batch
    ]
