"""The supervisor: starts children in order, watches them, restarts them by OTP's rules.

One :class:`Supervisor` runs one :class:`~diaspora.supervision.SupervisorSpec`.
It behaves like Erlang/OTP's ``supervisor`` (strategies, restart types,
restart intensity, shutdown policies, the runtime calls and their errors)
plus an optional exponential backoff between restarts. It is itself a
:class:`~diaspora.supervision.Runnable`, so supervisors nest: a child whose
``start`` is a ``SupervisorSpec`` is a supervisor named ``<parent>.<id>``.

Like OTP's, a supervisor handles one thing at a time — a child's exit, a due
restart, a runtime call — in its own task, in arrival order; a runtime call
returns once the supervisor has carried it out. So, as in OTP, a child must
not await a runtime call on its own supervisor before it has called
``started()``: the supervisor is waiting for that first.

How a child is started
    ``spec.start()`` is called with no arguments (``start(*args)`` for the
    children of a ``simple_one_for_one`` supervisor, ``args`` being those given
    to ``start_child``) and must return a fresh Runnable, whose ``run`` the
    supervisor calls in a task of its own. Both run with a
    :class:`~diaspora.supervision.ChildContext` set: ``current_child().path``
    is the child's name in the tree (``"root.ingest.sum"``).

Declining to start (OTP's ``ignore``)
    ``start`` may return :data:`~diaspora.supervision.IGNORE`, or ``run``
    raise :class:`~diaspora.errors.ChildIgnore` before ``started()``: the
    child is kept with no running child (removed if temporary, or under
    ``simple_one_for_one``), it is not restarted, and it does not count
    toward the restart intensity; ``start_child``/``restart_child`` return
    ``None``.

Exit reasons
    ``run`` returning is a ``normal`` exit, raising
    :class:`~diaspora.errors.ChildShutdown` a ``shutdown`` exit (both normal:
    a transient child is not restarted), raising anything else an abnormal exit
    whose reason is the exception.

Its parts: the records and messages in :mod:`~diaspora.supervision._records`,
the children table in ``_children``, the mailbox in ``_mailbox``, starting
and stopping one child in ``_launcher``, stopping several in ``_shutdown``,
what an exit means in ``_restarting``; this module runs the supervisor's task
and its runtime calls.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus

from diaspora.clock import Clock, SystemClock
from diaspora.errors import (
    ChildNotFound,
    ChildStartError,
    ConfigError,
    RestartIntensityExceeded,
    SupervisorNotRunning,
)
from diaspora.events import Deleted, EventSink
from diaspora.log import get_logger
from diaspora.supervision._children import _Children
from diaspora.supervision._events import _Reporter
from diaspora.supervision._launcher import _Launcher
from diaspora.supervision._mailbox import _Mailbox
from diaspora.supervision._records import (
    _STOP,
    ChildCounts,
    ChildRecord,
    _AutoShutdown,
    _Call,
    _Child,
    _Exited,
    _GaveUp,
    _Phase,
    _RestartDue,
    _StartFailed,
    _Stopping,
)
from diaspora.supervision._restarting import _Restarter
from diaspora.supervision._runnable import Runnable
from diaspora.supervision._shutdown import halt, terminate_all
from diaspora.supervision._spec import Restart, SupervisorSpec, check_significant

__all__ = ["Supervisor"]

_T = TypeVar("_T")


async def _first(*events: anyio.Event) -> None:
    """Wait until any of ``events`` is set."""
    if any(event.is_set() for event in events):
        return
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


class Supervisor:
    """An Erlang/OTP supervisor of Runnables (see the module docstring).

    ``name`` names it in events and logs, and prefixes its children's paths;
    ``clock`` measures restart intensity, backoff and shutdown timeouts;
    ``on_event`` (an :class:`~diaspora.events.EventSink`, such as a fabric)
    receives every supervision event (see :mod:`diaspora.supervision._events`),
    and the events its children report themselves; ``rng`` draws backoff
    jitter. Nested supervisors share all three with their parent.

    >>> import anyio
    >>> class Hello:
    ...     def __init__(self) -> None:
    ...         self.stop = anyio.Event()
    ...     async def run(self, *, task_status: TaskStatus[None]) -> None:
    ...         print("hello from", current_child().path)
    ...         task_status.started()
    ...         await self.stop.wait()
    ...     def request_stop(self) -> None:
    ...         self.stop.set()
    >>> async def main() -> None:
    ...     sup = Supervisor(SupervisorSpec([ChildSpec("hello", start=Hello)]), name="root")
    ...     async with anyio.create_task_group() as tg:
    ...         await tg.start(sup.run)            # returns once every child has started
    ...         print(await sup.count_children())
    ...         sup.request_stop()                 # children stop in reverse start order
    >>> from diaspora.supervision import ChildSpec, current_child
    >>> anyio.run(main)
    hello from root.hello
    ChildCounts(specs=1, active=1, supervisors=0, workers=1)
    """

    def __init__(
        self,
        spec: SupervisorSpec,
        *,
        name: str,
        clock: Clock | None = None,
        on_event: EventSink | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(spec, SupervisorSpec):
            raise ConfigError(f"supervisor {name!r}: spec={spec!r} is not a SupervisorSpec")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"supervisor: name={name!r} must be a non-empty string")
        self._spec = spec
        self._name = name
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._sink = on_event
        self._events = _Reporter(on_event)
        # what children report themselves goes the same way; with no sink, their own default
        self._child_events = self._events if on_event is not None else None
        self._rng = rng if rng is not None else random.Random()
        self._log = get_logger(supervisor=name)
        self._mailbox = _Mailbox(name)
        self._children = _Children(name, spec)
        self._phase = _Phase.NEW
        self._started_event = anyio.Event()
        self._ended_event = anyio.Event()
        self._failure: BaseException | None = None
        self._tg: TaskGroup | None = None
        self._launcher = _Launcher(
            name,
            clock=self._clock,
            events=self._events,
            child_events=self._child_events,
            log=self._log,
            post=self._mailbox.post,
            nest=self._nest,
        )
        self._restarter = _Restarter(
            name,
            spec,
            children=self._children,
            launcher=self._launcher,
            events=self._events,
            clock=self._clock,
            rng=self._rng,
            post=self._mailbox.post,
        )

    def __repr__(self) -> str:
        return f"<Supervisor {self._name!r} {self._spec.strategy.value} {self._phase.value}>"

    @property
    def name(self) -> str:
        """The supervisor's name: a dotted path from the root supervisor."""
        return self._name

    @property
    def spec(self) -> SupervisorSpec:
        """The strategy, intensity, period, backoff and initial children it runs."""
        return self._spec

    @property
    def _simple(self) -> bool:
        return self._children.simple

    def _nest(self, spec: SupervisorSpec, name: str) -> Supervisor:
        """A child supervisor, sharing this one's clock, event sink and RNG."""
        return Supervisor(spec, name=name, clock=self._clock, on_event=self._sink, rng=self._rng)

    # --- Runnable ---------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, then supervise them until stopped or failed.

        Calls ``task_status.started()`` once every initial child has started.
        Returns after :meth:`request_stop` (children stopped in reverse start
        order). Raises :class:`~diaspora.errors.ChildStartError` if a child
        fails to start (the ones started before it are stopped first), and
        :class:`~diaspora.errors.RestartIntensityExceeded` after giving up.
        """
        if self._phase is not _Phase.NEW:
            raise RuntimeError(
                f"supervisor {self._name!r} has already run: make a new Supervisor to run again"
            )
        self._phase = _Phase.STARTING
        try:
            async with anyio.create_task_group() as tg:
                self._tg = self._launcher.tg = self._restarter.tg = tg
                try:
                    self._failure = await self._lifetime(task_status)
                finally:
                    # every child has been stopped by now; only backoff timers are left
                    tg.cancel_scope.cancel()
        finally:
            self._phase = _Phase.ENDED
            self._ended_event.set()
            self._mailbox.close()
        if self._failure is not None:
            raise self._failure

    def request_stop(self) -> None:
        """Stop the children in reverse start order, then return from :meth:`run`."""
        self._launcher.request_stop()
        self._mailbox.post(_STOP)

    async def started(self) -> None:
        """Wait until :meth:`run` has started every initial child.

        Raises :class:`~diaspora.errors.SupervisorNotRunning` if it ended first.
        """
        await _first(self._started_event, self._ended_event)
        if not self._started_event.is_set():
            raise SupervisorNotRunning(
                f"supervisor {self._name!r} ended before it started its children"
            ) from self._failure

    # --- runtime API (OTP's supervisor module) ----------------------------------------

    async def start_child(self, *args: Any) -> Runnable | None:
        """Add and start a child; return its Runnable (``None`` if its start declined).

        ``start_child(ChildSpec(...))`` for the other strategies: the child is
        added after the existing ones (if it declined, kept with no running
        child unless temporary). ``start_child(*args)`` for
        ``simple_one_for_one``: ``template.start(*args)`` makes the child, and
        the Runnable returned is its handle for :meth:`terminate_child`, valid
        across its restarts (if it declined, nothing is added). Raises
        ``ChildAlreadyStarted``, ``ChildAlreadyPresent``, ``ChildStartError``,
        or ``ConfigError`` for a significant child the flags do not allow.
        """
        return await self._call(lambda: self._start_child(args))

    async def terminate_child(self, child: str | Runnable) -> None:
        """Stop a child by id (or its running Runnable) by its shutdown policy.

        The spec is kept (restart it with :meth:`restart_child`) unless the
        child is temporary. Under ``simple_one_for_one`` pass the handle
        :meth:`start_child` returned; the child is removed, and a child that
        has already exited is fine (OTP: terminating a dead process is ok). A
        pending restart is cancelled. Raises ``ChildNotFound`` or
        ``SimpleOneForOneError``.
        """
        await self._call(lambda: self._terminate_child(child))

    async def restart_child(self, child_id: str) -> Runnable | None:
        """Start again a child that is not running; its new Runnable (``None``: it declined).

        Raises ``ChildNotFound``, ``ChildRunning``, ``ChildRestarting``,
        ``ChildStartError`` or ``SimpleOneForOneError``.
        """
        return await self._call(lambda: self._restart_child(child_id))

    async def delete_child(self, child_id: str) -> None:
        """Remove the spec of a child that is not running.

        Raises ``ChildNotFound``, ``ChildRunning``, ``ChildRestarting`` or
        ``SimpleOneForOneError``.
        """
        await self._call(lambda: self._delete_child(child_id))

    async def which_children(self) -> list[ChildRecord]:
        """Every child, in start order."""
        return await self._call(self._children.records)

    async def count_children(self) -> ChildCounts:
        """How many specs, running children, supervisors and workers."""
        return await self._call(self._children.counts)

    # --- the supervisor's task --------------------------------------------------------

    async def _lifetime(self, task_status: TaskStatus[None]) -> BaseException | None:
        try:
            await self._start_initial_children()
        except _Stopping:
            return None
        except _StartFailed as failed:
            error = ChildStartError(
                f"supervisor {self._name!r}: child {failed.child.name!r} failed to start: "
                f"{failed.error!r}; the children started before it were stopped",
                child=failed.child.name,
            )
            error.__cause__ = failed.error
            return error
        self._phase = _Phase.RUNNING
        self._started_event.set()
        task_status.started()
        try:
            await self._serve()
        except _AutoShutdown:
            pass  # OTP exits with reason shutdown; here run returns: a normal exit too
        except _GaveUp as gave_up:
            await self._terminate_all()
            spec = self._spec
            gave_up_error = RestartIntensityExceeded(
                f"supervisor {self._name!r}: more than {spec.intensity} restart(s) in "
                f"{spec.period}s (last: child {gave_up.child.name!r} exited with "
                f"{gave_up.exit.reason}); it stopped its children and gave up"
            )
            gave_up_error.__cause__ = gave_up.exit.error
            return gave_up_error
        await self._terminate_all()
        return None

    async def _start_initial_children(self) -> None:
        if self._simple:
            return
        for spec in self._spec.children:
            child = _Child(spec, spec.id)
            try:
                started = await self._launcher.start(child)
            except (_StartFailed, _Stopping):
                await self._terminate_all()
                raise
            if started is not None or spec.restart is not Restart.TEMPORARY:
                self._children.append(child)

    async def _serve(self) -> None:
        while not self._launcher.stop_requested:
            message = await self._mailbox.receive()
            try:
                if isinstance(message, _Exited):
                    await self._restarter.on_exit(message.incarnation)
                elif isinstance(message, _RestartDue):
                    await self._restarter.carry_out(message.pending)
                elif isinstance(message, _Call):
                    await self._mailbox.serve(message)
            except _Stopping:
                return

    async def _terminate_all(self) -> None:
        await terminate_all(self._children, self._launcher)

    async def _call(self, op: Callable[[], Awaitable[_T]]) -> _T:
        if self._phase is _Phase.ENDED:
            raise SupervisorNotRunning(f"supervisor {self._name!r} is not running")
        return await self._mailbox.call(op)

    # --- runtime API, run in the supervisor's task ------------------------------------

    async def _start_child(self, args: tuple[Any, ...]) -> Runnable | None:
        child = self._children.new(args)
        if not child.dynamic:
            where = f"supervisor {self._name!r}: start_child: significant"
            check_significant(child.spec, self._spec.auto_shutdown, where)
        try:
            runnable = await self._launcher.start(child)
        except _StartFailed as failed:
            raise ChildStartError(
                f"supervisor {self._name!r}: child {child.name!r} failed to start: "
                f"{failed.error!r}",
                child=child.name,
            ) from failed.error
        if runnable is None and (child.dynamic or child.spec.restart is Restart.TEMPORARY):
            return None  # declined: nothing to keep (OTP's {ok, undefined})
        child.handle = runnable if child.dynamic else None
        self._children.append(child)
        return runnable

    async def _terminate_child(self, ref: str | Runnable) -> None:
        if self._simple and isinstance(ref, str):
            self._children.not_simple(f"terminate_child({ref!r}) by id")
        try:
            child = self._children.find(ref)
        except ChildNotFound:
            if self._children.ended(ref):
                return  # OTP: terminating a child that has already exited is ok
            raise
        await halt(self._children, self._launcher, child)
        child.attempt = 0
        if child.dynamic or child.spec.restart is Restart.TEMPORARY:
            self._children.remove(child)

    async def _restart_child(self, child_id: str) -> Runnable | None:
        self._children.not_simple("restart_child")
        child = self._children.find(child_id)
        self._children.check_stopped(child)
        child.attempt = 0
        try:
            return await self._launcher.start(child)
        except _StartFailed as failed:
            raise ChildStartError(
                f"supervisor {self._name!r}: child {child.name!r} failed to restart: "
                f"{failed.error!r}",
                child=child.name,
            ) from failed.error

    async def _delete_child(self, child_id: str) -> None:
        self._children.not_simple("delete_child")
        child = self._children.find(child_id)
        self._children.check_stopped(child)
        self._children.remove(child)
        await self._events.emit(Deleted(name=self._name, child=child.name))
