"""The ``process`` provider: a pool's workers as process nodes, one per worker.

Each worker is a :class:`~diaspora.workflow.ProcessNode` connected to its
site's server (the URLs of the site's fabric), running a supervisor
``<pool path>.<worker id>`` whose children are the worker's actors, each
under its own id (:class:`~diaspora.compute.AtPath`). ``kill -9`` of the
worker's process is an exit the pool controller counts against its site;
a site is healthy while the provider's own connection to its server is up.

>>> ProcessProvider({}).workers()
[]
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from anyio.abc import TaskGroup, TaskStatus

from diaspora.compute._anchor import reaches
from diaspora.compute._guests import GuestStart, ask_worker
from diaspora.compute._pools import AtPath
from diaspora.compute._provider import WorkerInfo, WorkerOrder, WorkerState
from diaspora.errors import ConfigError
from diaspora.events import EventSink, LogSink
from diaspora.log import get_logger
from diaspora.supervision._context import ChildContext, child_events
from diaspora.supervision._spec import ChildSpec, SupervisorSpec
from diaspora.workflow._node import DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_START_TIMEOUT, ProcessNode

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["ProcessProvider", "worker_tree"]

#: A worker's own supervisor: an actor that fails twice in five seconds fails the worker
#: (the pool counts that against the site's intensity).
_WORKER_INTENSITY = 1
_WORKER_PERIOD = 5.0


def worker_tree(order: WorkerOrder) -> SupervisorSpec:
    """The subtree a worker runs: its actors, each under its own id (and its guests' host)."""
    children = [
        ChildSpec(f"a{i}", AtPath(actor.id, actor.start)) for i, actor in enumerate(order.actors)
    ]
    if order.guests:  # the actors it may take later, on request
        children.append(ChildSpec("guests", GuestStart(order.pool, order.id, order.guests)))
    return SupervisorSpec(children, intensity=_WORKER_INTENSITY, period=_WORKER_PERIOD)


class _Started(TaskStatus[None]):
    def __init__(self, worker: _Worker) -> None:
        self.worker = worker

    def started(self, value: None = None) -> None:
        self.worker.state = WorkerState.RUNNING


@dataclass(slots=True)
class _Worker:
    order: WorkerOrder
    node: ProcessNode
    state: WorkerState = WorkerState.STARTING
    error: str | None = None
    exited: anyio.Event = field(default_factory=anyio.Event)


class ProcessProvider:
    """Starts each worker as a process node on the fabric of its site.

    ``fabrics`` maps each site to a connected :class:`Fabric` (one fabric for
    every site: sites share a server). ``path`` prefixes the workers'
    supervisor names (default: the calling child's path, else ``pool``).
    """

    def __init__(
        self,
        fabrics: Mapping[str, Fabric] | Fabric,
        *,
        path: str | None = None,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        standby: bool = True,
        events: EventSink | None = None,
        stop_grace: float = 5.0,
    ) -> None:
        self._fabrics = fabrics
        self.stop_grace = stop_grace
        self.path = path
        self.heartbeat_timeout = heartbeat_timeout
        self.start_timeout = start_timeout
        self.standby = standby
        self.events = events
        self._workers: dict[str, _Worker] = {}
        self._tg: TaskGroup | None = None
        self._log = get_logger(provider="process")

    def fabric(self, site: str) -> Fabric:
        """The fabric whose server ``site``'s workers connect to."""
        if not isinstance(self._fabrics, Mapping):
            return self._fabrics
        try:
            return self._fabrics[site]
        except KeyError:
            raise ConfigError(
                f"process provider: no fabric for site {site!r} (sites: {', '.join(self._fabrics)})"
            ) from None

    async def __aenter__(self) -> Self:
        if self.path is None:
            with contextlib.suppress(LookupError):
                from diaspora.supervision._context import current_child

                self.path = current_child().path
        if self.events is None:
            self.events = child_events(LogSink())
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        for worker in self._workers.values():
            worker.node.request_stop()
        tg, self._tg = self._tg, None
        assert tg is not None
        await tg.__aexit__(et, ev, tb)

    async def start(self, order: WorkerOrder) -> None:
        if self._tg is None:
            raise RuntimeError("ProcessProvider.start outside `async with provider`")
        context = ChildContext(supervisor=self.path or "pool", id=order.id, events=self.events)
        node = ProcessNode(
            worker_tree(order),
            self.fabric(order.site),
            context=context,
            heartbeat_timeout=self.heartbeat_timeout,
            start_timeout=self.start_timeout,
            events=self.events,
            standby=self.standby,
        )
        worker = self._workers[order.id] = _Worker(order, node)
        self._tg.start_soon(self._run, worker)

    async def _run(self, worker: _Worker) -> None:
        try:
            await worker.node.run(task_status=_Started(worker))
        except Exception as exc:  # a crash or a hang: the controller counts it
            worker.error = repr(exc)
        finally:
            worker.state = WorkerState.EXITED
            worker.exited.set()

    async def stop(self, worker: str, *, grace: float | None = None) -> None:
        """SIGTERM the worker; SIGKILL it if it still runs ``grace`` seconds later (default
        ``stop_grace``; a worker cut off from its server may not finish its graceful stop,
        and its actors must not run twice; ``0``: at once)."""
        found = self._workers.get(worker)
        if found is not None and found.state is not WorkerState.EXITED:
            found.node.request_stop()
            if self._tg is not None:
                wait = self.stop_grace if grace is None else grace
                self._tg.start_soon(self._kill_after, found, wait)

    async def _kill_after(self, worker: _Worker, grace: float) -> None:
        with anyio.move_on_after(grace):
            await worker.exited.wait()
            return
        pid = worker.node.pid
        if pid is not None and worker.state is not WorkerState.EXITED:
            self._log.warning("worker_killed", worker=worker.order.id, pid=pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def workers(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(wid, w.order.site, w.state, w.node.pid, w.error)
            for wid, w in self._workers.items()
        ]

    def forget(self, worker: str) -> None:
        found = self._workers.get(worker)
        if found is not None and found.state is WorkerState.EXITED:
            del self._workers[worker]

    async def host(self, worker: str, actor: str) -> bool:
        return await ask_worker(self._workers.get(worker), self.fabric, "host", actor)

    async def release(self, worker: str, actor: str) -> bool:
        return await ask_worker(self._workers.get(worker), self.fabric, "release", actor)

    async def reaches(self, site: str, domain: str) -> bool:
        return await reaches(self.fabric(site), domain)

    async def health(self, site: str) -> bool:
        return self.fabric(site).is_connected

    def pids(self, site: str) -> list[int]:
        """The pids of ``site``'s live workers (for tests that kill them)."""
        return [
            w.node.pid
            for w in self._workers.values()
            if w.order.site == site and w.state is not WorkerState.EXITED and w.node.pid
        ]

    def describe(self) -> dict[str, Any]:
        return {wid: (w.order.site, w.state.value) for wid, w in self._workers.items()}
