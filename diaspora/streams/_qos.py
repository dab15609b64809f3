"""A stream's quality of service: what it promises, and what it does when it cannot keep it.

A :class:`QosSpec` is a frozen value, built by hand or from a config table
with :meth:`QosSpec.from_mapping`; either way it is validated once, and every
error names the field path:

>>> spec = QosSpec.from_mapping(
...     {"rate": 100, "max_lag_items": 500, "stall_deadline": 2.0,
...      "policy": {"kind": "decimate", "k": 4}, "reconstructor": "linear"},
...     where="ptycho.toml: streams.patterns.qos",
... )
>>> spec.policy
OverloadPolicy(kind=<Policy.DECIMATE: 'decimate'>, k=4, n=None, fn=None, max_replicas=None)
>>> QosSpec(rate=-1)
Traceback (most recent call last):
...
diaspora.errors.ConfigError: qos.rate: -1 must be a number > 0 (items/s)

The TOML form of a spec, with every key (all optional)::

    [streams."edge1.patterns".qos]
    rate = 100.0              # expected items/s
    max_lag_items = 1000      # consumer may be this many items behind...
    max_lag_seconds = 5.0     # ...or this many seconds of production
    max_latency = 0.5         # end-to-end, emit to handled, seconds
    stall_deadline = 2.0      # no item for this long is a stall
    policy = "block"          # or { kind = "decimate", k = 4 }
                              #    { kind = "aggregate", n = 10, fn = "mean" }
                              #    "drop_oldest", { kind = "scale_out", max_replicas = 8 }
    reconstructor = "linear"  # or "package.module:Class"
    reconstructor_args = {}   # keyword arguments for it
    fill_stalls = false       # during a stall, emit reconstructed items at `rate`
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, Final, TypeVar

from diaspora.errors import ConfigError
from diaspora.streams._reconstruct import BUILTIN_RECONSTRUCTORS, Reconstructor, load_reconstructor

__all__ = ["AggregateFn", "OverloadPolicy", "Policy", "QosSpec"]


class Policy(Enum):
    """What a stream does when its consumer cannot keep up."""

    #: Producers wait (backpressure): nothing is lost, latency grows.
    BLOCK = "block"
    #: Keep one item in ``k``.
    DECIMATE = "decimate"
    #: Combine every ``n`` items into one with ``fn``.
    AGGREGATE = "aggregate"
    #: Drop the oldest unconsumed items first (newest data wins).
    DROP_OLDEST = "drop_oldest"
    #: Start more consumer replicas (up to ``max_replicas``).
    SCALE_OUT = "scale_out"


class AggregateFn(Enum):
    """How :attr:`Policy.AGGREGATE` combines ``n`` items (field by field on maps and arrays)."""

    MEAN = "mean"
    SUM = "sum"
    MIN = "min"
    MAX = "max"
    FIRST = "first"
    LAST = "last"


_E = TypeVar("_E", bound=Enum)

_PARAMS: Final = {
    Policy.DECIMATE: ("k",),
    Policy.AGGREGATE: ("n", "fn"),
    Policy.SCALE_OUT: ("max_replicas",),
}


def _choices(enum: type[Enum]) -> str:
    return ", ".join(repr(m.value) for m in enum)


def _enum(enum: type[_E], value: object, where: str) -> _E:
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        try:
            return enum(value.strip().lower())
        except ValueError:
            pass
    raise ConfigError(f"{where}: {value!r} is not one of {_choices(enum)}")


def _positive(value: object, where: str, unit: str, *, integer: bool = False) -> Any:
    if value is None:
        return None
    kind = "an integer" if integer else "a number"
    ok_type = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, ok_type) or not value > 0:
        raise ConfigError(f"{where}: {value!r} must be {kind} > 0 ({unit})")
    return value if integer else float(value)


def _at_least(value: object, minimum: int, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {value!r} must be an integer >= {minimum} ({what})")
    return value


@dataclass(frozen=True, slots=True)
class OverloadPolicy:
    """A :class:`Policy` with its parameters; build one with the class methods.

    >>> OverloadPolicy.aggregate(10).fn
    <AggregateFn.MEAN: 'mean'>
    >>> OverloadPolicy(Policy.DECIMATE)
    Traceback (most recent call last):
    ...
    diaspora.errors.ConfigError: qos.policy.k: decimate needs k, an integer >= 2 (keep 1 item in k)
    """

    kind: Policy = Policy.BLOCK
    k: int | None = None
    n: int | None = None
    fn: AggregateFn | None = None
    max_replicas: int | None = None
    #: Where this policy was configured, for error messages.
    where: str = field(default="qos.policy", compare=False, repr=False)

    def __post_init__(self) -> None:
        where = self.where
        if not isinstance(self.kind, Policy):
            raise ConfigError(f"{where}.kind: {self.kind!r} is not a Policy")
        allowed = _PARAMS.get(self.kind, ())
        for name in ("k", "n", "fn", "max_replicas"):
            if getattr(self, name) is not None and name not in allowed:
                takes = [p.value for p, params in _PARAMS.items() if name in params]
                raise ConfigError(
                    f"{where}.{name}: only {' and '.join(takes)} takes {name} "
                    f"(this policy is {self.kind.value})"
                )
        if self.kind is Policy.DECIMATE:
            if self.k is None:
                raise ConfigError(
                    f"{where}.k: decimate needs k, an integer >= 2 (keep 1 item in k)"
                )
            _at_least(self.k, 2, f"{where}.k", "keep 1 item in k")
        elif self.kind is Policy.AGGREGATE:
            if self.n is None:
                raise ConfigError(
                    f"{where}.n: aggregate needs n, an integer >= 2 (items combined into one)"
                )
            _at_least(self.n, 2, f"{where}.n", "items combined into one")
            fn = AggregateFn.MEAN if self.fn is None else _enum(AggregateFn, self.fn, f"{where}.fn")
            object.__setattr__(self, "fn", fn)
        elif self.kind is Policy.SCALE_OUT and self.max_replicas is not None:
            _at_least(self.max_replicas, 2, f"{where}.max_replicas", "consumer replicas")

    @classmethod
    def block(cls) -> OverloadPolicy:
        return cls(Policy.BLOCK)

    @classmethod
    def decimate(cls, k: int) -> OverloadPolicy:
        return cls(Policy.DECIMATE, k=k)

    @classmethod
    def aggregate(cls, n: int, fn: AggregateFn = AggregateFn.MEAN) -> OverloadPolicy:
        return cls(Policy.AGGREGATE, n=n, fn=fn)

    @classmethod
    def drop_oldest(cls) -> OverloadPolicy:
        return cls(Policy.DROP_OLDEST)

    @classmethod
    def scale_out(cls, max_replicas: int | None = None) -> OverloadPolicy:
        return cls(Policy.SCALE_OUT, max_replicas=max_replicas)

    @classmethod
    def from_config(cls, data: object, where: str = "qos.policy") -> OverloadPolicy:
        """From a name (``"block"``) or a table (``{kind = "decimate", k = 4}``)."""
        if isinstance(data, str | Policy):
            return cls(_enum(Policy, data, where), where=where)
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{where}: {data!r} is neither a policy name ({_choices(Policy)}) "
                'nor a table like {kind = "decimate", k = 4}'
            )
        unknown = [key for key in data if key not in ("kind", "k", "n", "fn", "max_replicas")]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} (known: kind, k, n, fn, max_replicas)"
            )
        if "kind" not in data:
            raise ConfigError(f"{where}.kind: missing; one of {_choices(Policy)}")
        fn = data.get("fn")
        return cls(
            _enum(Policy, data["kind"], f"{where}.kind"),
            k=data.get("k"),
            n=data.get("n"),
            fn=None if fn is None else _enum(AggregateFn, fn, f"{where}.fn"),
            max_replicas=data.get("max_replicas"),
            where=where,
        )

    def to_config(self) -> str | dict[str, Any]:
        """The config form :meth:`from_config` reads (a bare name when there are no params)."""
        params = {
            name: (value.value if isinstance(value, Enum) else value)
            for name in ("k", "n", "fn", "max_replicas")
            if (value := getattr(self, name)) is not None
        }
        return {"kind": self.kind.value, **params} if params else self.kind.value


_QOS_KEYS: Final = (
    "rate",
    "max_lag_items",
    "max_lag_seconds",
    "max_latency",
    "stall_deadline",
    "policy",
    "reconstructor",
    "reconstructor_args",
    "fill_stalls",
)


@dataclass(frozen=True, slots=True)
class QosSpec:
    """What one stream promises (rate, lag, latency, stalls) and how it copes.

    Every bound is optional (``None``: not watched). ``fill_stalls`` makes
    the runtime emit reconstructed items at ``rate`` while the stream is
    stalled beyond ``stall_deadline``, so it needs all three of ``rate``,
    ``stall_deadline`` and ``reconstructor``.
    """

    rate: float | None = None
    max_lag_items: int | None = None
    max_lag_seconds: float | None = None
    max_latency: float | None = None
    stall_deadline: float | None = None
    policy: OverloadPolicy = field(default_factory=OverloadPolicy)
    reconstructor: str | None = None
    reconstructor_args: Mapping[str, Any] = field(default_factory=dict, hash=False)
    fill_stalls: bool = False
    #: Where this spec was configured (file and table path), for error messages.
    where: str = field(default="qos", compare=False, repr=False)

    def __post_init__(self) -> None:
        where = self.where
        set_ = object.__setattr__
        set_(self, "rate", _positive(self.rate, f"{where}.rate", "items/s"))
        set_(
            self,
            "max_lag_items",
            _positive(self.max_lag_items, f"{where}.max_lag_items", "items", integer=True),
        )
        for name in ("max_lag_seconds", "max_latency", "stall_deadline"):
            set_(self, name, _positive(getattr(self, name), f"{where}.{name}", "seconds"))
        if not isinstance(self.policy, OverloadPolicy):
            raise ConfigError(f"{where}.policy: {self.policy!r} is not an OverloadPolicy")
        if self.reconstructor is not None:
            _check_reconstructor_path(self.reconstructor, f"{where}.reconstructor")
        if not isinstance(self.reconstructor_args, Mapping) or not all(
            isinstance(key, str) for key in self.reconstructor_args
        ):
            raise ConfigError(
                f"{where}.reconstructor_args: {self.reconstructor_args!r} is not a table "
                "of keyword arguments"
            )
        if self.reconstructor_args and self.reconstructor is None:
            raise ConfigError(f"{where}.reconstructor_args: given without a reconstructor")
        set_(self, "reconstructor_args", MappingProxyType(dict(self.reconstructor_args)))
        if not isinstance(self.fill_stalls, bool):
            raise ConfigError(f"{where}.fill_stalls: {self.fill_stalls!r} is not true or false")
        if self.fill_stalls:
            needed = ("rate", "stall_deadline", "reconstructor")
            missing = [name for name in needed if getattr(self, name) is None]
            if missing:
                raise ConfigError(
                    f"{where}.fill_stalls: true needs rate, stall_deadline and reconstructor "
                    f"(missing: {', '.join(missing)})"
                )
        if self.rate is not None and self.stall_deadline is not None:
            period = 1.0 / self.rate
            if self.stall_deadline <= period:
                raise ConfigError(
                    f"{where}.stall_deadline: {self.stall_deadline}s is not longer than the "
                    f"expected gap between items (1/rate = {period:g}s): every item would "
                    "look like a stall"
                )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "qos") -> QosSpec:
        """Build from a config table (e.g. parsed TOML); ``where`` prefixes every error."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: {data!r} is not a table")
        for key in data:
            if key not in _QOS_KEYS:
                raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(_QOS_KEYS)})")
        fields = dict(data)
        if "policy" in fields:
            fields["policy"] = OverloadPolicy.from_config(fields["policy"], f"{where}.policy")
        return cls(**fields, where=where)

    def to_mapping(self) -> dict[str, Any]:
        """The config table :meth:`from_mapping` reads back into an equal spec."""
        out: dict[str, Any] = {}
        for name in _QOS_KEYS:
            value = getattr(self, name)
            if name == "policy":
                value = value.to_config()
            elif name == "reconstructor_args":
                value = dict(value) or None
            elif name == "fill_stalls":
                value = value or None
            if value is not None:
                out[name] = value
        return out

    def make_reconstructor(self) -> Reconstructor | None:
        """Load :attr:`reconstructor` with its args (``None`` if none is configured).

        Call it when the stream starts, so a bad import path fails then,
        not at the first gap.
        """
        if self.reconstructor is None:
            return None
        return load_reconstructor(
            self.reconstructor, where=f"{self.where}.reconstructor", **self.reconstructor_args
        )


def _check_reconstructor_path(value: object, where: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {value!r} is not a reconstructor name or import path")
    if value.strip().lower() in BUILTIN_RECONSTRUCTORS:
        return
    module, colon, attr = value.partition(":")
    if not colon:
        module, _, attr = value.rpartition(".")
    if not module or not attr or " " in value:
        raise ConfigError(
            f"{where}: {value!r} is neither a built-in ({', '.join(BUILTIN_RECONSTRUCTORS)}) "
            "nor an import path like 'package.module:Name'"
        )
