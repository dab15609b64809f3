"""A supervision tree from a TOML file, run in the test's own process against the test's server.

:class:`Workflow` is what the ``workflow`` pytest fixture starts: the same
tree ``diaspora run FILE --url URL`` would run, but in-process, so that a
test can see its supervisors (which children run, which gave up), find the
pid of every process node without relying on events, and be sure that
nothing outlives it: leaving the ``async with`` stops the tree in reverse
start order and then checks that every process it started is gone
(:attr:`Workflow.orphans`, killed if there were any).

Its actors run the fault-injection stage (``faults=True``), so an
:class:`~diaspora.testing.Injector` can crash, hang and freeze its actors,
including those in process nodes. Run it on the main thread's event loop or
in a blocking portal that lives as long as it does: process nodes die with
the thread that spawned them.

>>> from diaspora.workflow import parse_config
>>> tree = parse_config('''
... [[supervisor.children]]
... id = "sum"
... actor = "actors.examples:RunningSum"
... process = true
... ''')
>>> Workflow(tree, "nats://127.0.0.1:4222").describe()
"<config>: supervisor 'root' (one_for_one) with 0 supervisors, 1 actor, 1 process node below it"
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection, Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import anyio
from anyio.abc import TaskGroup, TaskStatus

from diaspora.actor import ActorRuntime
from diaspora.errors import SupervisorNotRunning, WorkflowError
from diaspora.events import Event, GaveUp, MemorySink, TeeSink
from diaspora.fabric import Fabric
from diaspora.log import get_logger
from diaspora.supervision import ChildRecord, ChildStatus, Supervisor
from diaspora.supervision._binding import add_stages
from diaspora.testing._faults import FaultInjection
from diaspora.testing._pids import PidWatcher, child_processes, is_running
from diaspora.testing._waiting import wait_until
from diaspora.workflow import ProcessNode, TreeConfig, load_config
from diaspora.workflow._node import HOST_MODULE

__all__ = ["Workflow", "WorkflowError"]

#: Fabric options for a tree under test: reconnect fast after a server or link fault.
_FABRIC_DEFAULTS: Final[Mapping[str, Any]] = {"backoff_initial": 0.02, "backoff_max": 0.5}
_CALL_TIMEOUT: Final = 5.0


class _Recorder(MemorySink):
    """Keeps every event with the time it came (``time.time()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def emit(self, event: Event) -> None:
        self.times.append(time.time())
        await super().emit(event)


class Workflow:
    """Runs the tree of ``config`` (a TOML path or a parsed :class:`TreeConfig`) on ``url``.

    ``url`` is where the tree connects (a server, or a
    :class:`~diaspora.testing.LinkProxy` in front of one); its process nodes
    get the same URL. ``observer`` is a fabric that watches events (pids,
    supervision events), best connected to the server directly so that link
    faults do not blind it; by default the tree's own. ``fabric_options``
    are extra :class:`~diaspora.fabric.Fabric` keyword arguments.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | TreeConfig,
        url: str | Sequence[str],
        *,
        observer: Fabric | None = None,
        faults: bool = True,
        start_timeout: float = 60.0,
        stop_timeout: float = 60.0,
        fabric_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config if isinstance(config, TreeConfig) else load_config(config)
        self.url = url
        self.faults = faults
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._fabric_options = {**_FABRIC_DEFAULTS, **(fabric_options or {})}
        self._observer = observer
        self._fabric: Fabric | None = None
        self._supervisor: Supervisor | None = None
        self._sink: _Recorder | None = None
        self._watcher: PidWatcher | None = None
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._ended = anyio.Event()
        self._node_pids: set[int] = set()
        self._hosts_before: set[int] = set()
        #: What the root supervisor raised when it ended by itself (gave up...), else ``None``.
        self.error: BaseException | None = None
        #: Processes still alive after the tree stopped (killed then); empty when all is well.
        self.orphans: list[int] = []
        self._log = get_logger(workflow=self.config.name)

    # -- what a test reads -------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The root supervisor's name (first token of every actor id)."""
        return self.config.name

    @property
    def fabric(self) -> Fabric:
        """The tree's own connection."""
        if self._fabric is None:
            raise WorkflowError(f"workflow {self.name!r} is not running: use `async with`")
        return self._fabric

    @property
    def supervisor(self) -> Supervisor:
        """The root supervisor."""
        if self._supervisor is None:
            raise WorkflowError(f"workflow {self.name!r} is not running: use `async with`")
        return self._supervisor

    @property
    def pids(self) -> PidWatcher:
        """The event watcher that records the pid of every actor and node that started."""
        if self._watcher is None:
            raise WorkflowError(f"workflow {self.name!r} is not running: use `async with`")
        return self._watcher

    @property
    def events(self) -> list[Event]:
        """Every event of the in-process supervisors and their process nodes, oldest first."""
        return self._sink.events if self._sink is not None else []

    @property
    def gave_up(self) -> list[GaveUp]:
        """The :class:`~diaspora.events.GaveUp` events: restart intensity exceeded in the tree."""
        return self._sink.of(GaveUp) if self._sink is not None else []

    def events_since(self, at: float) -> list[Event]:
        """The :attr:`events` that came at or after ``at`` (a ``time.time()``)."""
        sink = self._sink
        if sink is None:
            return []
        return [event for event, came in zip(sink.events, sink.times, strict=True) if came >= at]

    @property
    def entered(self) -> bool:
        """Inside its ``async with`` (started and not yet stopped)."""
        return self._stack is not None

    @property
    def ended(self) -> bool:
        """The root supervisor is no longer running."""
        return self._ended.is_set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            self._hosts_before = set(child_processes(command=HOST_MODULE))
            fabric = await stack.enter_async_context(
                Fabric(self.url, name=self.name, **self._fabric_options)
            )
            self._fabric = fabric
            self._watcher = await stack.enter_async_context(
                PidWatcher(self._observer if self._observer is not None else fabric)
            )
            self._sink = _Recorder()  # kept for the test, and published on the fabric
            spec = self.config.bind(fabric)
            if self.faults:
                spec = add_stages(spec, (FaultInjection,))
            self._supervisor = Supervisor(
                spec, name=self.name, on_event=TeeSink(self._sink, fabric)
            )
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(self._stop)  # before the task group waits for the tree
            with anyio.fail_after(self.start_timeout):
                await self._tg.start(self._run)
        except BaseException as exc:
            # not under a shield: the stack holds a task group, whose scope must be innermost
            # the same failure comes back grouped by the task group: it is told below
            with contextlib.suppress(BaseExceptionGroup):
                await stack.__aexit__(type(exc), exc, exc.__traceback__)
            with anyio.CancelScope(shield=True):
                await self._check_orphans()
            if self.error is not None:
                raise WorkflowError(
                    f"workflow {self.config.source}: failed to start: {self.error}"
                ) from self.error
            if isinstance(exc, TimeoutError):
                raise WorkflowError(
                    f"workflow {self.config.source}: not started within {self.start_timeout}s"
                ) from exc
            raise
        self._stack = stack
        self._log.info("workflow_started", url=self.url)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            await stack.__aexit__(et, ev, tb)
        finally:
            with anyio.CancelScope(shield=True):
                await self._check_orphans()
        self._log.info("workflow_stopped", orphans=self.orphans)

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        supervisor = self.supervisor
        try:
            await supervisor.run(task_status=task_status)
        except Exception as exc:
            # kept for the test to see; the tree is simply not running any more
            self.error = exc
            self._log.warning("workflow_ended", error=repr(exc))
        finally:
            self._ended.set()

    async def _stop(self) -> None:
        """Stop the tree in reverse start order; cancel it after ``stop_timeout``."""
        supervisor = self._supervisor
        if supervisor is None or self.ended:
            return
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(SupervisorNotRunning):
                self._node_pids |= {pid for _, pid in await self._node_records()}
            supervisor.request_stop()
            with anyio.move_on_after(self.stop_timeout) as scope:
                await self._ended.wait()
        if scope.cancelled_caught:
            self._log.warning("workflow_stop_timeout", timeout_s=self.stop_timeout)
            if self._tg is not None:
                self._tg.cancel_scope.cancel()  # cancelling the supervisor kills its nodes

    async def _check_orphans(self) -> None:
        seen: set[int] = set()
        if self._watcher is not None:  # the observer may see other trees' events too
            for target, pids in self._watcher.pids.items():
                if target.startswith(f"{self.name}."):
                    seen.update(pids)
        suspects = (self._node_pids | seen) - {os.getpid()}
        hosts = set(child_processes(command=HOST_MODULE)) - self._hosts_before
        suspects |= hosts

        def all_gone() -> bool:
            return not any(is_running(pid) for pid in suspects)

        with contextlib.suppress(TimeoutError):
            await wait_until(all_gone, timeout=10.0, what="the workflow's processes gone")
        self.orphans = sorted(pid for pid in suspects if is_running(pid))
        for pid in self.orphans:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.orphans:
            self._log.error("workflow_orphans", pids=self.orphans)

    def assert_no_orphans(self) -> None:
        """Raise :class:`WorkflowError` if a process outlived the tree (after it stopped)."""
        if self.orphans:
            raise WorkflowError(
                f"workflow {self.config.source}: processes {self.orphans} outlived the tree "
                "(killed now); a process node did not stop with its supervisor"
            )

    # -- the tree, as the in-process supervisors see it ------------------------------------

    async def children(self) -> dict[str, ChildRecord]:
        """Every child of the in-process supervisors, by path (``root.stage.sum``).

        Subtrees inside process nodes are not visible (their node is). Empty
        once the root supervisor has ended.
        """
        found: dict[str, ChildRecord] = {}

        async def visit(supervisor: Supervisor) -> None:
            try:
                with anyio.fail_after(_CALL_TIMEOUT):
                    records = await supervisor.which_children()
            except (SupervisorNotRunning, TimeoutError):
                return
            for record in records:
                if record.id is None:
                    continue
                found[f"{supervisor.name}.{record.id}"] = record
                if isinstance(record.runnable, Supervisor):
                    await visit(record.runnable)

        if self._supervisor is not None and not self.ended:
            await visit(self._supervisor)
        return found

    async def _node_records(self) -> list[tuple[str, int]]:
        out = []
        for path, record in (await self.children()).items():
            runnable = record.runnable
            if isinstance(runnable, ProcessNode) and runnable.pid is not None:
                out.append((path, runnable.pid))
        return out

    async def running(self) -> bool:
        """Whether the tree is up: the root runs and every child it can see is running."""
        if self.ended:
            return False
        children = await self.children()
        return bool(children) and all(r.status is ChildStatus.RUNNING for r in children.values())

    async def wait_running(self, timeout: float = 60.0) -> None:
        """Wait until :meth:`running`; :class:`WorkflowError` naming what is not, after
        ``timeout``."""
        try:
            await wait_until(self.running, timeout=timeout, interval=0.05, what="tree running")
        except TimeoutError:
            states = {p: r.status.value for p, r in (await self.children()).items()}
            raise WorkflowError(
                f"workflow {self.name!r} not fully running after {timeout}s: "
                f"ended={self.ended} error={self.error!r} children={states}"
            ) from None

    async def locate(self, target: str) -> int | None:
        """The pid running ``target`` as the tree sees it: a process node's own, or this
        process for an in-process actor or supervisor; ``None`` if not (yet) known."""
        record = (await self.children()).get(target)
        if record is None or record.status is not ChildStatus.RUNNING:
            return None
        runnable = record.runnable
        if isinstance(runnable, ProcessNode):
            pid = runnable.pid
            if pid is not None:
                self._node_pids.add(pid)
            return pid if pid is not None and is_running(pid) else None
        if isinstance(runnable, ActorRuntime | Supervisor):
            return os.getpid()
        return None

    async def wait_pid(
        self, target: str, *, timeout: float = 30.0, exclude: Collection[int] = ()
    ) -> int:
        """The live pid of ``target`` (actor id or node path), waiting for it to (re)start.

        Looks in the tree first, then in the pids the events reported (actors
        inside a process node's own subtree).
        """
        deadline = time.monotonic() + timeout
        while True:
            pid = await self.locate(target)
            if pid is None or pid in exclude:
                pid = self.pids.latest(target, exclude)
            if pid is not None and pid not in exclude:
                return pid
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"workflow {self.name!r}: no live process of {target!r} within {timeout}s "
                    f"(known: {sorted(self.pids.pids)}); check the id (a path like "
                    f"'{self.name}.<child>')"
                )
            await anyio.sleep(0.05)

    def describe(self) -> str:
        """One line: the config file and its tree."""
        return f"{Path(self.config.source).name}: {self.config.summary()}"
