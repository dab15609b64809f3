"""The fault data model: what an :class:`~diaspora.testing.Injector` can break, as values.

A :class:`FaultSpec` is one fault (a :class:`FaultKind`, a target, its
parameters), validated when it is made; a :class:`FaultStep` is one step of a
schedule (a delay, then a fault); an :class:`Injected` is the record of one
fault carried out. They are plain frozen values, so hypothesis strategies can
draw them and reports can store them (``as_dict``).

>>> FaultSpec(FaultKind.KILL_SERVER, duration=1.5).describe()
'kill_server for 1.5s'
>>> FaultSpec(FaultKind.HANG, "root.sum").describe()
'hang root.sum past its deadline'
>>> FaultSpec(FaultKind.CRASH)
Traceback (most recent call last):
...
diaspora.errors.InjectionError: fault crash: needs a target (an actor id)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from diaspora.errors import InjectionError

__all__ = ["FaultKind", "FaultSpec", "FaultStep", "Injected"]


class FaultKind(Enum):
    """Every fault an :class:`Injector` knows, grouped by what it breaks (:attr:`layer`)."""

    CRASH = "crash"
    HANG = "hang"
    FREEZE = "freeze"
    KILL_PROCESS = "kill_process"
    KILL_SERVER = "kill_server"
    RESTART_SERVER = "restart_server"
    PAUSE_SERVER = "pause_server"
    RESUME_SERVER = "resume_server"
    LATENCY = "latency"
    BANDWIDTH = "bandwidth"
    RESET_LINK = "reset_link"
    BLACKHOLE = "blackhole"
    CUT_LINK = "cut_link"
    HEAL_LINK = "heal_link"

    @property
    def layer(self) -> str:
        """``actor``, ``process``, ``server`` or ``link``."""
        return _LAYERS[self]

    @property
    def lasting(self) -> bool:
        """Whether the fault lasts until lifted (by its ``duration`` or a heal)."""
        return self in _LASTING


_LAYERS: Final = {
    FaultKind.CRASH: "actor",
    FaultKind.HANG: "actor",
    FaultKind.FREEZE: "process",
    FaultKind.KILL_PROCESS: "process",
    FaultKind.KILL_SERVER: "server",
    FaultKind.RESTART_SERVER: "server",
    FaultKind.PAUSE_SERVER: "server",
    FaultKind.RESUME_SERVER: "server",
    FaultKind.LATENCY: "link",
    FaultKind.BANDWIDTH: "link",
    FaultKind.RESET_LINK: "link",
    FaultKind.BLACKHOLE: "link",
    FaultKind.CUT_LINK: "link",
    FaultKind.HEAL_LINK: "link",
}
_LASTING: Final = frozenset(
    {
        FaultKind.KILL_SERVER,
        FaultKind.PAUSE_SERVER,
        FaultKind.LATENCY,
        FaultKind.BANDWIDTH,
        FaultKind.BLACKHOLE,
        FaultKind.CUT_LINK,
    }
)
_TARGETED: Final = frozenset(
    {FaultKind.CRASH, FaultKind.HANG, FaultKind.FREEZE, FaultKind.KILL_PROCESS}
)
#: What a lasting fault occupies: a newer fault of the same aspect replaces it.
_ASPECT: Final = {
    FaultKind.KILL_SERVER: "server_down",
    FaultKind.PAUSE_SERVER: "server_paused",
    FaultKind.LATENCY: "latency",
    FaultKind.BANDWIDTH: "bandwidth",
    FaultKind.BLACKHOLE: "blackhole",
    FaultKind.CUT_LINK: "cut",
}
_LINK_ASPECTS: Final = ("latency", "bandwidth", "blackhole", "cut")


def _check_number(value: float | None, name: str, where: str, *, positive: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InjectionError(f"{where}: {name}={value!r} must be a finite number")
    if value < 0 or (positive and value == 0):
        raise InjectionError(f"{where}: {name}={value!r} must be {'>' if positive else '>='} 0")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault to inject.

    ``target`` is the actor id (crash, hang) or the actor id / node path whose
    process is hit (freeze, kill_process). ``seconds`` is how long a hang or
    freeze blocks (a hang with ``None`` blocks past the actor's
    ``handle_deadline``) or the added latency. ``duration`` is how long a
    server or link fault lasts before the injector lifts it (``None``: until
    healed; a blackhole needs one). ``rate`` is a bandwidth cap in bytes/s,
    ``jitter`` extra random latency.
    """

    kind: FaultKind
    target: str | None = None
    seconds: float | None = None
    duration: float | None = None
    rate: float | None = None
    jitter: float = 0.0

    def __post_init__(self) -> None:
        kind = FaultKind(self.kind)
        object.__setattr__(self, "kind", kind)
        where = f"fault {kind.value}"
        if kind in _TARGETED and not self.target:
            what = "an actor id" if kind.layer == "actor" else "an actor id or node path"
            raise InjectionError(f"{where}: needs a target ({what})")
        if kind not in _TARGETED and self.target is not None:
            raise InjectionError(f"{where}: takes no target (got {self.target!r})")
        _check_number(self.seconds, "seconds", where)
        _check_number(self.duration, "duration", where)
        _check_number(self.rate, "rate", where, positive=True)
        _check_number(self.jitter, "jitter", where)
        if kind in (FaultKind.FREEZE, FaultKind.LATENCY) and self.seconds is None:
            raise InjectionError(f"{where}: needs seconds (how long)")
        if kind is FaultKind.BANDWIDTH and self.rate is None:
            raise InjectionError(f"{where}: needs rate (bytes per second)")
        if kind is FaultKind.BLACKHOLE and self.duration is None:
            raise InjectionError(f"{where}: needs a duration (use cut_link for an open-ended one)")
        if self.duration is not None and not kind.lasting:
            raise InjectionError(f"{where}: is instantaneous, it takes no duration")

    def describe(self) -> str:
        """One line, e.g. ``kill_process root.sum`` or ``latency 50ms for 2.0s``."""
        parts = [self.kind.value]
        if self.target is not None:
            parts.append(self.target)
        if self.kind is FaultKind.HANG:
            parts.append("past its deadline" if self.seconds is None else f"{self.seconds:g}s")
        elif self.kind is FaultKind.FREEZE:
            parts.append(f"{self.seconds:g}s")
        elif self.kind is FaultKind.LATENCY:
            assert self.seconds is not None
            parts.append(f"{self.seconds * 1000:g}ms")
            if self.jitter:
                parts.append(f"±{self.jitter * 1000:g}ms")
        elif self.kind is FaultKind.BANDWIDTH:
            parts.append(f"{self.rate:g}B/s")
        if self.duration is not None:
            parts.append(f"for {self.duration:g}s")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The non-default fields, JSON-ready (``kind`` as its string)."""
        out: dict[str, Any] = {"kind": self.kind.value}
        for name in ("target", "seconds", "duration", "rate"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.jitter:
            out["jitter"] = self.jitter
        return out


@dataclass(frozen=True, slots=True)
class FaultStep:
    """One step of a fault schedule: wait ``delay`` seconds, then inject ``fault``."""

    delay: float
    fault: FaultSpec

    def __post_init__(self) -> None:
        _check_number(self.delay, "delay", "fault step")


@dataclass(frozen=True, slots=True)
class Injected:
    """The record of one injected fault: what, where, when (``time.time()``), which pid, and a
    note when something about it is uncertain (an order sent more than once)."""

    serial: int
    fault: FaultSpec
    at: float
    pid: int | None = None
    note: str | None = None

    @property
    def kind(self) -> FaultKind:
        return self.fault.kind

    @property
    def target(self) -> str:
        """The actor, process, ``server`` or ``link`` the fault hit."""
        if self.fault.target is not None:
            return self.fault.target
        return "server" if self.kind.layer == "server" else "link"

    def as_dict(self) -> dict[str, Any]:
        out = {**self.fault.as_dict(), "target": self.target, "at": self.at}
        if self.pid is not None:
            out["pid"] = self.pid
        if self.note is not None:
            out["note"] = self.note
        return out
