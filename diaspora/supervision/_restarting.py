"""What a child's exit means: restart it (and its set), forget it, or stop the supervisor.

A :class:`~diaspora.supervision.Supervisor` hands each exit of a child to its
``_Restarter``, in the supervisor's task. By OTP's rules it restarts the child
(and, by the strategy, its siblings), forgets it, gives up (more than
``intensity`` restarts within ``period``) or, for a significant child, stops
the supervisor (``auto_shutdown``).

A restart that fails to start counts as another restart, and is retried as
OTP's ``try_again_restart``: a message the supervisor posts to itself, so it
serves the calls that arrived meanwhile (``which_children`` shows the child
``restarting``; ``terminate_child`` ends the loop) and a restart that keeps
failing never nests one retry in another.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from diaspora.clock import Clock
from diaspora.events import BackingOff, Exited, GaveUp, SelfShutdown
from diaspora.supervision._children import _Children
from diaspora.supervision._events import _Reporter
from diaspora.supervision._launcher import _Launcher
from diaspora.supervision._records import (
    _KILLED,
    _AutoShutdown,
    _Child,
    _Exit,
    _GaveUp,
    _Incarnation,
    _Message,
    _Pending,
    _RestartDue,
    _RestartWindow,
    _StartFailed,
)
from diaspora.supervision._shutdown import stop_each
from diaspora.supervision._spec import AutoShutdown, Restart, SupervisorSpec

__all__: list[str] = []


class _Restarter:
    """Restarts the children of the supervisor ``name`` running ``spec`` (in its task).

    ``post`` puts a message in the supervisor's mailbox (a due or retried
    restart); ``tg`` is set to the supervisor's task group while it runs.
    """

    def __init__(
        self,
        name: str,
        spec: SupervisorSpec,
        *,
        children: _Children,
        launcher: _Launcher,
        events: _Reporter,
        clock: Clock,
        rng: random.Random,
        post: Callable[[_Message], None],
    ) -> None:
        self._name = name
        self._spec = spec
        self._children = children
        self._launcher = launcher
        self._events = events
        self._clock = clock
        self._rng = rng
        self._post = post
        self._window = _RestartWindow(spec.intensity, spec.period, clock)
        self.tg: TaskGroup | None = None

    async def on_exit(self, incarnation: _Incarnation) -> None:
        """``incarnation`` ended by itself. Raises _GaveUp or _AutoShutdown."""
        child = incarnation.child
        if incarnation.reaped or child.incarnation is not incarnation:
            return
        incarnation.reaped = True
        child.incarnation = None
        exit = incarnation.exit or _KILLED
        if self._clock.monotonic() - incarnation.started_at >= self._spec.backoff_reset_after:
            child.attempt = 0
        await self._events.emit(
            Exited(name=self._name, child=child.name, reason=exit.reason, normal=exit.normal)
        )
        restart = child.spec.restart
        if restart is Restart.PERMANENT or (restart is Restart.TRANSIENT and not exit.normal):
            await self.restart(child, exit)
            return
        if restart is Restart.TEMPORARY or child.dynamic:
            self._children.remove(child)
        await self._auto_shutdown(child)

    async def _auto_shutdown(self, child: _Child) -> None:
        """OTP's ``do_auto_shutdown``: ``child`` exited by itself and will not be restarted."""
        policy = self._spec.auto_shutdown
        if policy is AutoShutdown.NEVER or not child.spec.significant:
            return
        if policy is AutoShutdown.ALL_SIGNIFICANT and any(
            c.spec.significant and (c.incarnation is not None or c.pending is not None)
            for c in self._children
        ):
            return
        await self._events.emit(
            SelfShutdown(name=self._name, child=child.name, policy=policy.value)
        )
        raise _AutoShutdown(child)

    async def restart(self, cause: _Child, exit: _Exit, *, retry: bool = False) -> None:
        """``cause`` exited (or failed to restart) and must be restarted: count it, stop its
        set, then restart the set now, after its backoff, or (``retry``) as a message."""
        spec = self._spec
        if not self._window.add():
            await self._events.emit(
                GaveUp(
                    name=self._name,
                    child=cause.name,
                    reason=exit.reason,
                    restarts=len(self._window),
                    intensity=spec.intensity,
                    period=spec.period,
                )
            )
            raise _GaveUp(cause, exit)
        group = self._children.restart_set(cause)
        await stop_each(self._launcher, reversed(group))
        pending = _Pending(cause)
        for child in group:
            if child is not cause and child.spec.restart is Restart.TEMPORARY:
                self._children.remove(child)  # stopped with its siblings, never restarted
                continue
            self._children.unpend(child)
            child.pending = pending
        cause.attempt += 1
        delay = spec.backoff.delay(cause.attempt, self._rng) if spec.backoff else 0.0
        if delay <= 0:
            if retry:
                self._post(_RestartDue(pending))  # OTP's try_again_restart
            else:
                await self.carry_out(pending)
            return
        await self._events.emit(
            BackingOff(
                name=self._name, child=cause.name, attempt=cause.attempt, delay_s=round(delay, 3)
            )
        )
        pending.scope = anyio.CancelScope()
        assert self.tg is not None
        self.tg.start_soon(self._restart_after, pending, delay)

    async def _restart_after(self, pending: _Pending, delay: float) -> None:
        assert pending.scope is not None
        with pending.scope:
            await self._clock.sleep(delay)
            self._post(_RestartDue(pending))

    async def carry_out(self, pending: _Pending) -> None:
        """Start, in start order, the children still waiting for ``pending``."""
        if pending.cancelled:
            return
        for child in [c for c in self._children if c.pending is pending]:
            if child.pending is not pending:
                continue
            child.pending = None
            try:
                started = await self._launcher.start(child, pending.cause)
            except _StartFailed as failed:
                # OTP: a restart that fails to start counts as another restart, and is retried
                for rest in self._children:
                    if rest.pending is pending:
                        rest.pending = None
                error = failed.error
                await self.restart(child, _Exit(repr(error), error), retry=True)
                return
            if started is None and (child.dynamic or child.spec.restart is Restart.TEMPORARY):
                self._children.remove(child)  # declined (ignore): forgotten, as in OTP
