"""Supervision specs: what to start, how to restart it, how to stop it.

These are the values a Python user builds by hand and a TOML file is parsed
into (see :mod:`diaspora.workflow._config`). They follow Erlang/OTP's child
specifications and supervisor flags, with OTP's defaults. They validate
themselves, in one place: a :class:`~diaspora.errors.ConfigError` from a spec
starts with the field path inside it (``supervisor.children[1].id: ...``,
``backoff.initial: ...``), so a file parser puts its own path in front.

>>> spec = SupervisorSpec(
...     strategy=Strategy.ONE_FOR_ALL,
...     intensity=3,
...     period=5.0,
...     children=[ChildSpec("sum", start=lambda: ...)],
... )
>>> spec.children[0].restart, spec.children[0].effective_shutdown
(<Restart.PERMANENT: 'permanent'>, 5.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Literal

from diaspora.backoff import Backoff
from diaspora.errors import ConfigError
from diaspora.supervision._runnable import Runnable

__all__ = [
    "BRUTAL_KILL",
    "IGNORE",
    "INFINITY",
    "AutoShutdown",
    "Backoff",
    "ChildSpec",
    "ChildType",
    "Ignore",
    "Restart",
    "Shutdown",
    "StartFn",
    "Strategy",
    "SupervisorSpec",
]

#: Stop a child by cancelling it at once (OTP's ``exit(Child, kill)``).
BRUTAL_KILL: Final = "brutal_kill"
#: Ask a child to stop and wait for it however long it takes.
INFINITY: Final = "infinity"


class Ignore(Enum):
    """The type of :data:`IGNORE`."""

    IGNORE = "ignore"


#: What a start function returns to decline starting its child (OTP's ``ignore``):
#: the spec is kept with no running child (a temporary one, or one of a
#: ``simple_one_for_one`` supervisor, is removed), it is not restarted and it
#: does not count toward the restart intensity. A Runnable declines the same way
#: by raising :class:`~diaspora.errors.ChildIgnore` before ``started()``.
IGNORE: Final = Ignore.IGNORE

#: Seconds to wait after ``request_stop()`` before cancelling, or one of the two policies.
Shutdown = float | Literal["brutal_kill", "infinity"]
#: Makes a fresh :class:`Runnable` for each (re)start, or returns :data:`IGNORE`;
#: ``simple_one_for_one`` passes ``start_child``'s arguments to it.
StartFn = Callable[..., Runnable | Ignore]

_ID = re.compile(r"^[A-Za-z0-9_\-]+$")


class Strategy(Enum):
    """Which siblings are restarted with a child that is restarted (OTP's strategies)."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"
    SIMPLE_ONE_FOR_ONE = "simple_one_for_one"


class Restart(Enum):
    """When a child that exited is restarted.

    ``permanent``: always. ``transient``: only after an abnormal exit (it
    raised or was killed). ``temporary``: never, and its spec is removed.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class AutoShutdown(Enum):
    """When a supervisor stops itself after *significant* children exit by themselves (OTP 24).

    ``never`` (the default): never, and no child may be significant.
    ``any_significant``: when any significant child exits and is not restarted
    (a transient one exiting normally, a temporary one exiting at all).
    ``all_significant``: when the last significant child still running or
    restarting does so. The supervisor then stops its other children and
    returns normally from ``run`` (a normal exit: a transient parent does not
    restart it). Children stopped by the supervisor itself (``terminate_child``,
    a sibling's restart) never trigger it.
    """

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


class ChildType(Enum):
    """OTP's child type: counted by ``count_children``; supervisors default to ``infinity``."""

    WORKER = "worker"
    SUPERVISOR = "supervisor"


def check_shutdown(value: object, where: str) -> Shutdown:
    """Validate a shutdown policy (seconds >= 0, ``brutal_kill`` or ``infinity``)."""
    if value in (BRUTAL_KILL, INFINITY):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(
            f"{where}: {value!r} is not a shutdown policy: "
            f"use seconds >= 0, {BRUTAL_KILL!r} or {INFINITY!r}"
        )
    return float(value)


def check_id(value: object, where: str) -> str:
    """Validate a child id: letters, digits, ``_`` or ``-`` (ids are joined by dots)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ConfigError(
            f"{where}: {value!r} is not a child id: use letters, digits, '_' or '-' "
            "(ids are joined with '.' into actor ids)"
        )
    return value


def check_significant(child: ChildSpec, auto_shutdown: AutoShutdown, where: str) -> None:
    """OTP's check of a significant child against its supervisor's ``auto_shutdown``.

    In OTP's order: ``auto_shutdown = never`` first, then a permanent child.
    """
    if not child.significant:
        return
    if auto_shutdown is AutoShutdown.NEVER:
        raise ConfigError(
            f"{where}: child {child.id!r} is significant but the supervisor's auto_shutdown "
            "is 'never': set auto_shutdown to 'any_significant' or 'all_significant', "
            "or significant = false"
        )
    if child.restart is Restart.PERMANENT:
        raise ConfigError(
            f"{where}: child {child.id!r} is significant but permanent (it never ends for "
            "good): make it transient or temporary, or significant = false"
        )


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child of a supervisor (OTP's child specification).

    ``start`` is called on every start and restart and must return a fresh
    :class:`Runnable`; it may also be a :class:`SupervisorSpec`, which makes
    the child a nested supervisor. ``shutdown`` and ``type`` default as in
    OTP: 5 seconds for a worker, ``infinity`` for a supervisor. A
    ``significant`` child (transient or temporary, under a supervisor whose
    ``auto_shutdown`` is not ``never``) stops its supervisor when it exits for
    good (see :class:`AutoShutdown`).
    """

    id: str
    start: StartFn | SupervisorSpec
    restart: Restart = Restart.PERMANENT
    shutdown: Shutdown | None = None
    type: ChildType | None = None
    significant: bool = False

    def __post_init__(self) -> None:
        where = f"child {self.id!r}"
        check_id(self.id, f"{where}: id")
        if not isinstance(self.start, SupervisorSpec) and not callable(self.start):
            raise ConfigError(
                f"{where}: start={self.start!r} is neither a callable returning a Runnable "
                "nor a SupervisorSpec"
            )
        if not isinstance(self.restart, Restart):
            raise ConfigError(f"{where}: restart={self.restart!r} is not a Restart")
        if self.shutdown is not None:
            object.__setattr__(
                self, "shutdown", check_shutdown(self.shutdown, f"{where}: shutdown")
            )
        if self.type is not None and not isinstance(self.type, ChildType):
            raise ConfigError(f"{where}: type={self.type!r} is not a ChildType")
        if not isinstance(self.significant, bool):
            raise ConfigError(f"{where}: significant: {self.significant!r} is not a boolean")

    @property
    def effective_type(self) -> ChildType:
        """``type``, or SUPERVISOR when ``start`` is a :class:`SupervisorSpec`, else WORKER."""
        if self.type is not None:
            return self.type
        return ChildType.SUPERVISOR if isinstance(self.start, SupervisorSpec) else ChildType.WORKER

    @property
    def effective_shutdown(self) -> Shutdown:
        """``shutdown``, or OTP's default: 5 s for a worker, ``infinity`` for a supervisor."""
        if self.shutdown is not None:
            return self.shutdown
        return INFINITY if self.effective_type is ChildType.SUPERVISOR else 5.0


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    """A supervisor's flags and children (OTP's ``init/1`` result).

    More than ``intensity`` restarts within any ``period`` seconds make the
    supervisor stop all its children and fail to its parent. With
    ``simple_one_for_one``, ``children`` holds exactly one spec, the template
    of the children started with ``start_child``. ``period`` is a finite
    number of seconds > 0. ``auto_shutdown`` says when significant children
    make the supervisor stop itself (see :class:`AutoShutdown`).
    """

    children: Sequence[ChildSpec] = field(default_factory=tuple)
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 1
    period: float = 5.0
    backoff: Backoff | None = None
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER

    def __post_init__(self) -> None:
        children = tuple(self.children)
        object.__setattr__(self, "children", children)
        if not isinstance(self.strategy, Strategy):
            raise ConfigError(f"supervisor.strategy: {self.strategy!r} is not a Strategy")
        if isinstance(self.intensity, bool) or not isinstance(self.intensity, int):
            raise ConfigError(f"supervisor.intensity: {self.intensity!r} is not an integer")
        if self.intensity < 0:
            raise ConfigError(f"supervisor.intensity: {self.intensity!r} must be >= 0")
        if (
            isinstance(self.period, bool)
            or not isinstance(self.period, int | float)
            or not math.isfinite(self.period)
            or not self.period > 0
        ):
            raise ConfigError(
                f"supervisor.period: {self.period!r} is not a finite number of seconds > 0 "
                "(the window in which more than intensity restarts make it give up)"
            )
        object.__setattr__(self, "period", float(self.period))
        if self.backoff is not None and not isinstance(self.backoff, Backoff):
            raise ConfigError(f"supervisor.backoff: {self.backoff!r} is not a Backoff")
        if not isinstance(self.auto_shutdown, AutoShutdown):
            raise ConfigError(
                f"supervisor.auto_shutdown: {self.auto_shutdown!r} is not an AutoShutdown"
            )
        first: dict[str, int] = {}
        for i, child in enumerate(children):
            if not isinstance(child, ChildSpec):
                raise ConfigError(f"supervisor.children[{i}]: {child!r} is not a ChildSpec")
            if child.id in first:
                raise ConfigError(
                    f"supervisor.children[{i}].id: duplicate id {child.id!r} "
                    f"(also children[{first[child.id]}])"
                )
            first[child.id] = i
            check_significant(child, self.auto_shutdown, f"supervisor.children[{i}].significant")
        if self.strategy is Strategy.SIMPLE_ONE_FOR_ONE and len(children) != 1:
            raise ConfigError(
                "supervisor.children: simple_one_for_one needs exactly one child spec (the "
                f"template of the children started with start_child), got {len(children)}"
            )

    @property
    def backoff_reset_after(self) -> float:
        """Seconds a child must stay up for its backoff to start over."""
        if self.backoff is not None and self.backoff.reset_after is not None:
            return self.backoff.reset_after
        return self.period
