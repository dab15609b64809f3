"""Starting and stopping one child: make its Runnable, run it in a task, stop it by its policy.

A :class:`~diaspora.supervision.Supervisor` decides *which* children start
and stop, and when; its ``_Launcher`` carries out one start (``spec.start``
called with the child's context set, its ``run`` in a task of the
supervisor's task group, the wait for ``started()``) or one stop (the
child's shutdown policy: ``request_stop``, then a kill after the timeout, or
a brutal kill), and reports each as a supervision event.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from diaspora.clock import Clock
from diaspora.errors import ChildIgnore, ChildShutdown
from diaspora.events import ChildStarted, Ignored, Restarted, StartFailed, Terminated
from diaspora.log import FilteringBoundLogger
from diaspora.supervision._context import _CURRENT, ChildContext
from diaspora.supervision._events import _Reporter
from diaspora.supervision._records import (
    _IGNORE,
    _KILLED,
    _NORMAL,
    _SHUTDOWN,
    _Child,
    _Exit,
    _Exited,
    _Incarnation,
    _Message,
    _StartFailed,
    _StartSignal,
    _Stopping,
)
from diaspora.supervision._runnable import Runnable
from diaspora.supervision._spec import (
    BRUTAL_KILL,
    IGNORE,
    INFINITY,
    Restart,
    SupervisorSpec,
)

__all__: list[str] = []


class _Launcher:
    """Starts and stops the children of the supervisor ``name`` (one at a time, in its task).

    ``post`` puts a message in the supervisor's mailbox (a child's exit);
    ``nest`` makes the supervisor named ``name`` for a child whose ``start``
    is a ``SupervisorSpec``; ``tg`` is set to the supervisor's task group
    while it runs.
    """

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        events: _Reporter,
        child_events: _Reporter | None,
        log: FilteringBoundLogger,
        post: Callable[[_Message], None],
        nest: Callable[[SupervisorSpec, str], Runnable],
    ) -> None:
        self._name = name
        self._clock = clock
        self._events = events
        self._child_events = child_events
        self._log = log
        self._post = post
        self._nest = nest
        self.tg: TaskGroup | None = None
        self.stop_requested = False
        self._starting: _Incarnation | None = None  # the child start is waiting for

    def request_stop(self) -> None:
        """From now on no child starts; wake the start in progress, if any."""
        self.stop_requested = True
        if self._starting is not None:
            self._starting.wake.set()

    async def start(self, child: _Child, cause: _Child | None = None) -> Runnable | None:
        """Start ``child`` (again, after ``cause`` exited) and wait for its ``started()``.

        ``None`` if it declined (OTP's ``ignore``). Raises _StartFailed or _Stopping.
        """
        if self.stop_requested:
            raise _Stopping
        assert self.tg is not None
        context = ChildContext(
            self._name, child.name, child.starts, child.args, events=self._child_events
        )
        child.starts += 1
        failure: Exception | None = None
        token = _CURRENT.set(context)
        made: Runnable | None = None
        try:
            made = self._make(child)
            if made is not None:
                incarnation = _Incarnation(child, made)
                # the child's task inherits the context set above
                self.tg.start_soon(self._run, incarnation, name=f"{self._name}.{child.name}")
        except Exception as exc:
            failure = exc
        finally:
            _CURRENT.reset(token)
        if made is None and failure is None:
            await self._ignored(child)
            return None
        if failure is not None:
            await self._events.emit(
                StartFailed(name=self._name, child=child.name, reason=repr(failure))
            )
            raise _StartFailed(child, failure)
        # one event, not _first(settled, stop): a task group per start halves restarts/s
        self._starting = incarnation
        try:
            if not self.stop_requested:
                await incarnation.wake.wait()
        finally:
            self._starting = None
        if not incarnation.settled.is_set():
            await self.stop(incarnation)
            raise _Stopping
        exit = incarnation.exit
        if not incarnation.started and exit is _IGNORE:
            incarnation.reaped = True
            await self._ignored(child)
            return None
        if not incarnation.started and exit is not None and not exit.normal:
            incarnation.reaped = True
            await self._events.emit(
                StartFailed(name=self._name, child=child.name, reason=exit.reason)
            )
            raise _StartFailed(child, exit.error or RuntimeError(exit.reason))
        # returning before started() counts as starting, then exiting normally
        incarnation.started_at = self._clock.monotonic()
        child.incarnation = incarnation
        if cause is None:
            await self._events.emit(
                ChildStarted(name=self._name, child=child.name, incarnation=context.incarnation)
            )
        else:
            await self._events.emit(
                Restarted(
                    name=self._name,
                    child=child.name,
                    incarnation=context.incarnation,
                    attempt=cause.attempt,
                    cause=cause.name,
                )
            )
        return incarnation.runnable

    async def _ignored(self, child: _Child) -> None:
        removed = child.dynamic or child.spec.restart is Restart.TEMPORARY
        await self._events.emit(Ignored(name=self._name, child=child.name, removed=removed))

    def _make(self, child: _Child) -> Runnable | None:
        start = child.spec.start
        if isinstance(start, SupervisorSpec):
            if child.args:
                raise TypeError(
                    f"child {child.name!r} is a supervisor: start_child takes no arguments for it"
                )
            return self._nest(start, f"{self._name}.{child.name}")
        made = start(*child.args)
        if made is IGNORE:
            return None
        if inspect.isawaitable(made):
            if inspect.iscoroutine(made):
                made.close()
            raise TypeError(
                f"child {child.name!r}: start returned an awaitable; it must be a plain "
                "function returning a Runnable (do async set-up in run, before started())"
            )
        if not isinstance(made, Runnable):
            raise TypeError(
                f"child {child.name!r}: start returned {made!r}, which is not a Runnable "
                "(async run(*, task_status) and request_stop()) nor IGNORE"
            )
        return made

    async def _run(self, incarnation: _Incarnation) -> None:
        """The child's task: run it, classify how it ended, tell the supervisor."""
        try:
            with incarnation.scope:
                try:
                    await incarnation.runnable.run(task_status=_StartSignal(incarnation))
                except ChildShutdown as exc:
                    incarnation.exit = _Exit("shutdown", exc)
                except ChildIgnore as exc:
                    # declining is for starting; once started it is a crash like any other
                    incarnation.exit = _Exit(repr(exc), exc) if incarnation.started else _IGNORE
                except Exception as exc:
                    incarnation.exit = _Exit(repr(exc), exc)
                else:
                    incarnation.exit = _SHUTDOWN if incarnation.stop_requested else _NORMAL
        finally:
            if incarnation.killed or incarnation.exit is None:
                incarnation.exit = _KILLED
            incarnation.done.set()
            incarnation.settled.set()
            incarnation.wake.set()
            self._post(_Exited(incarnation))

    async def stop(self, incarnation: _Incarnation) -> _Exit:
        """Stop a child by its shutdown policy (if it has not ended already)."""
        incarnation.reaped = True
        child = incarnation.child
        if not incarnation.done.is_set():
            policy = child.spec.effective_shutdown
            if policy == BRUTAL_KILL:
                self._kill(incarnation)
            else:
                incarnation.stop_requested = True
                try:
                    incarnation.runnable.request_stop()
                except Exception as exc:
                    self._log.warning("request_stop_failed", child=child.name, error=repr(exc))
                    self._kill(incarnation)
                if policy != INFINITY and not incarnation.done.is_set():
                    assert isinstance(policy, float)
                    await self._kill_after(incarnation, policy)
            await incarnation.done.wait()
        exit = incarnation.exit or _KILLED
        await self._events.emit(Terminated(name=self._name, child=child.name, reason=exit.reason))
        return exit

    @staticmethod
    def _kill(incarnation: _Incarnation) -> None:
        incarnation.killed = True
        incarnation.scope.cancel()

    async def _kill_after(self, incarnation: _Incarnation, seconds: float) -> None:
        async with anyio.create_task_group() as tg:

            async def deadline() -> None:
                await self._clock.sleep(seconds)
                self._kill(incarnation)

            tg.start_soon(deadline)
            await incarnation.done.wait()
            tg.cancel_scope.cancel()
