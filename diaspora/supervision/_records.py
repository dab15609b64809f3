"""The supervisor's records: what it reports about its children, and its own bookkeeping.

Public values returned by the runtime calls (:class:`ChildStatus`,
:class:`ChildRecord`, :class:`ChildCounts`); then the private state of one
child (``_Child``, its current run ``_Incarnation``, a decided restart
``_Pending``), how a run ended (``_Exit``), the messages of the supervisor's
mailbox (``_Exited``, ``_RestartDue``, ``_Call``, ``_StopSignal``), the
exceptions that unwind its task (``_Stopping``, ``_GaveUp``,
``_AutoShutdown``, ``_StartFailed``), its lifecycle ``_Phase`` and its restart intensity
(``_RestartWindow``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

import anyio
from anyio.abc import TaskStatus

from diaspora.clock import Clock
from diaspora.supervision._runnable import Runnable
from diaspora.supervision._spec import ChildSpec, ChildType

__all__ = ["ChildCounts", "ChildRecord", "ChildStatus"]


class ChildStatus(Enum):
    """A child's state in :meth:`Supervisor.which_children` (OTP: a pid, restarting, undefined)."""

    RUNNING = "running"
    #: waiting for its restart (backoff), or its restart failed and will be retried
    RESTARTING = "restarting"
    #: not running: terminated with ``terminate_child``, or a transient child that ended normally
    UNDEFINED = "undefined"


@dataclass(frozen=True, slots=True)
class ChildRecord:
    """One child in :meth:`Supervisor.which_children`.

    ``id`` is ``None`` for the children of a ``simple_one_for_one`` supervisor
    (as in OTP); ``runnable`` is the running Runnable, ``None`` unless running.
    """

    id: str | None
    runnable: Runnable | None
    type: ChildType
    status: ChildStatus


@dataclass(frozen=True, slots=True)
class ChildCounts:
    """:meth:`Supervisor.count_children`: specs, running children, and specs by type.

    As in OTP, a ``simple_one_for_one`` supervisor has ``specs == 1`` (its
    template) and counts its dynamic children in ``supervisors``/``workers``.
    """

    specs: int
    active: int
    supervisors: int
    workers: int


@dataclass(frozen=True, slots=True)
class _Exit:
    reason: str
    error: BaseException | None = None

    @property
    def normal(self) -> bool:
        return self.reason in ("normal", "shutdown")


_NORMAL: Final = _Exit("normal")
_IGNORE: Final = _Exit("ignore")
_SHUTDOWN: Final = _Exit("shutdown")
_KILLED: Final = _Exit("killed")


class _Incarnation:
    """One run of one child: the Runnable ``start`` returned, and how it ended."""

    def __init__(self, child: _Child, runnable: Runnable) -> None:
        self.child = child
        self.runnable = runnable
        self.scope = anyio.CancelScope()
        self.started = False
        self.settled = anyio.Event()  # started() was called, or run ended
        self.wake = anyio.Event()  # settled, or the supervisor was asked to stop
        self.done = anyio.Event()
        self.exit: _Exit | None = None
        self.started_at = 0.0
        self.stop_requested = False
        self.killed = False
        # the supervisor has dealt with its end (stopped it, or saw it fail to start):
        # its _Exited message must not be taken for a crash
        self.reaped = False


class _StartSignal(TaskStatus[None]):
    """The ``task_status`` a child's ``run`` calls ``started()`` on."""

    def __init__(self, incarnation: _Incarnation) -> None:
        self._incarnation = incarnation

    def started(self, value: None = None) -> None:
        incarnation = self._incarnation
        if incarnation.started:
            raise RuntimeError(
                f"child {incarnation.child.name!r} called task_status.started() twice"
            )
        incarnation.started = True
        incarnation.settled.set()
        incarnation.wake.set()


class _Pending:
    """A restart decided and not carried out yet (backoff, or a failed start to retry)."""

    def __init__(self, cause: _Child) -> None:
        self.cause = cause
        self.cancelled = False
        self.scope: anyio.CancelScope | None = None

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class _Child:
    """A child spec and its current state (a static child, or one dynamic child)."""

    def __init__(
        self, spec: ChildSpec, name: str, *, args: tuple[Any, ...] = (), dynamic: bool = False
    ) -> None:
        self.spec = spec
        self.name = name
        self.args = args
        self.dynamic = dynamic
        self.incarnation: _Incarnation | None = None
        self.pending: _Pending | None = None
        self.handle: Runnable | None = None  # what start_child returned (dynamic children)
        self.attempt = 0  # consecutive restarts, for backoff
        self.starts = 0

    @property
    def status(self) -> ChildStatus:
        if self.incarnation is not None:
            return ChildStatus.RUNNING
        if self.pending is not None:
            return ChildStatus.RESTARTING
        return ChildStatus.UNDEFINED


@dataclass(eq=False, slots=True)
class _Exited:
    incarnation: _Incarnation


@dataclass(eq=False, slots=True)
class _RestartDue:
    pending: _Pending


class _Call:
    def __init__(self, op: Callable[[], Awaitable[Any]]) -> None:
        self.op = op
        self.done = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _StopSignal:
    pass


_STOP: Final = _StopSignal()
_Message = _Exited | _RestartDue | _Call | _StopSignal


class _Stopping(Exception):
    """request_stop() arrived while an operation was waiting for a child to start."""


class _AutoShutdown(Exception):
    """A significant child exited for good: the supervisor stops itself, normally."""

    def __init__(self, child: _Child) -> None:
        self.child = child


class _GaveUp(Exception):
    def __init__(self, child: _Child, exit: _Exit) -> None:
        self.child = child
        self.exit = exit


class _StartFailed(Exception):
    def __init__(self, child: _Child, error: BaseException) -> None:
        self.child = child
        self.error = error


class _Phase(Enum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    ENDED = "ended"


class _RestartWindow:
    """The restart intensity: the times of the restarts within the last ``period`` seconds."""

    def __init__(self, intensity: int, period: float, clock: Clock) -> None:
        self._intensity = intensity
        self._period = period
        self._clock = clock
        self._times: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._times)

    def add(self) -> bool:
        """Record a restart now; False if that makes more than ``intensity`` within ``period``."""
        now = self._clock.monotonic()
        threshold = now - self._period
        restarts = self._times
        while restarts and restarts[0] < threshold:  # oldest first: O(1) per restart
            restarts.popleft()
        restarts.append(now)
        return len(restarts) <= self._intensity
