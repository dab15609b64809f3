"""Controllable Runnables for supervisor tests, and a lab that records what they do.

Every worker appends to ``lab.log`` as it happens: ``start:<id>``,
``fail:<id>`` (raised before ``started()``), ``crash:<id>``, ``exit:<id>``
(returned by itself), ``stop:<id>`` (returned after ``request_stop``),
``kill:<id>`` (cancelled), ``ignore:<id>`` (declined to start). ``<id>`` is the
child's context id, so a dynamic child logs ``w-1``, ``w-2``...
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus

from diaspora.errors import ChildIgnore, ChildShutdown, SupervisorNotRunning
from diaspora.events import Event
from diaspora.supervision import (
    IGNORE,
    ChildContext,
    ChildStatus,
    Ignore,
    Runnable,
    Supervisor,
    current_child,
)
from diaspora.testing import wait_until


class Boom(Exception):
    """What a worker raises when told to crash."""


class StartBoom(Exception):
    """What a worker raises when told to fail before ``started()``."""


class Worker:
    """A Runnable that does whatever the test tells it to."""

    def __init__(self, lab: Lab, args: tuple[Any, ...], *, hang_on_stop: bool = False) -> None:
        self.lab = lab
        self.args = args
        self.hang_on_stop = hang_on_stop
        self.context: ChildContext | None = None
        self.stop_requested = False
        self.done = anyio.Event()
        self._told = anyio.Event()
        self._outcome = "stop"
        self._finish_stop = anyio.Event()

    @property
    def id(self) -> str:
        assert self.context is not None
        return self.context.id

    @property
    def path(self) -> str:
        assert self.context is not None
        return self.context.path

    @property
    def incarnation(self) -> int:
        assert self.context is not None
        return self.context.incarnation

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        self.context = current_child()
        try:
            await self._run(task_status)
        except anyio.get_cancelled_exc_class():
            self.lab.log.append(f"kill:{self.id}")
            raise
        finally:
            self.done.set()

    async def _run(self, task_status: TaskStatus[None]) -> None:
        if self.lab.take(self.lab.declines, self.id):
            self.lab.log.append(f"ignore:{self.id}")
            raise ChildIgnore
        if self.lab.take_start_failure(self.id):
            self.lab.log.append(f"fail:{self.id}")
            raise StartBoom(f"{self.id} failed to start")
        if self.id in self.lab.hang_in_start:
            self.lab.log.append(f"starting:{self.id}")
            await anyio.sleep_forever()
        self.lab.log.append(f"start:{self.id}")
        self.lab.instances[self.id].append(self)
        task_status.started()
        await self._told.wait()
        if self._outcome == "stop" and self.hang_on_stop:
            await self._finish_stop.wait()
        if self._outcome == "crash":
            self.lab.log.append(f"crash:{self.id}")
            raise Boom(f"{self.id} crashed")
        if self._outcome == "shutdown":
            self.lab.log.append(f"shutdown:{self.id}")
            raise ChildShutdown
        self.lab.log.append(f"{self._outcome}:{self.id}")

    def request_stop(self) -> None:
        self.stop_requested = True
        self._tell("stop")

    def _tell(self, outcome: str) -> None:
        if not self._told.is_set():
            self._outcome = outcome
            self._told.set()

    def crash(self) -> None:
        self._tell("crash")

    def exit(self) -> None:
        self._tell("exit")

    def shutdown(self) -> None:
        """Exit with OTP's ``shutdown`` reason (raise ChildShutdown)."""
        self._tell("shutdown")

    def finish_stopping(self) -> None:
        """Let a worker that hangs on stop return."""
        self._finish_stop.set()


_E = TypeVar("_E", bound=Event)


class Lab:
    """Makes workers, tells them what to do, records their log and the supervisor's events.

    A lab is the supervisors' event sink (``on_event=lab``).
    """

    def __init__(self) -> None:
        self.log: list[str] = []
        self.events: list[Event] = []
        self.instances: dict[str, list[Worker]] = defaultdict(list)
        self.start_failures: dict[str, float] = {}
        self.hang_in_start: set[str] = set()
        self.ignores: dict[str, float] = {}
        self.declines: dict[str, float] = {}

    def worker(self, *, hang_on_stop: bool = False) -> Callable[..., Runnable | Ignore]:
        """A ChildSpec start function."""

        def start(*args: Any) -> Runnable | Ignore:
            child = current_child().id
            if self.take(self.ignores, child):
                self.log.append(f"ignore:{child}")
                return IGNORE
            return Worker(self, args, hang_on_stop=hang_on_stop)

        return start

    def ignore_starts(self, child: str, times: float = math.inf, *, in_run: bool = False) -> None:
        """Make the next ``times`` starts of ``child`` decline: its start function returns
        IGNORE, or (``in_run``) its ``run`` raises ChildIgnore before ``started()``."""
        (self.declines if in_run else self.ignores)[child] = times

    @staticmethod
    def take(counts: dict[str, float], child: str) -> bool:
        left = counts.get(child, 0)
        if left <= 0:
            return False
        counts[child] = left - 1
        return True

    def fail_starts(self, child: str, times: float = math.inf) -> None:
        """Make the next ``times`` starts of ``child`` raise before ``started()``."""
        self.start_failures[child] = times

    def take_start_failure(self, child: str) -> bool:
        left = self.start_failures.get(child, 0)
        if left <= 0:
            return False
        self.start_failures[child] = left - 1
        return True

    def current(self, child: str) -> Worker:
        """The latest incarnation of ``child``."""
        return self.instances[child][-1]

    def starts(self, child: str) -> int:
        return len(self.instances[child])

    async def emit(self, event: Event) -> None:
        self.events.append(event)

    def of(self, cls: type[_E]) -> list[_E]:
        """The events of type ``cls`` so far, oldest first."""
        return [e for e in self.events if isinstance(e, cls)]

    def last(self, cls: type[_E]) -> _E:
        """The latest event, which must be of type ``cls``."""
        event = self.events[-1]
        assert isinstance(event, cls), f"the latest event is {event!r}, not a {cls.__name__}"
        return event

    def kinds(self, *, supervisor: str | None = None) -> list[tuple[str, str | None]]:
        """``(kind, child)`` of every event so far (of one supervisor)."""
        return [
            (e.kind, e.fields().get("child"))
            for e in self.events
            if supervisor is None or e.name == supervisor
        ]

    def take_log(self) -> list[str]:
        log, self.log = self.log, []
        return log

    async def wait_log(self, entry: str) -> None:
        await wait_until(lambda: entry in self.log, interval=0.001, what=f"{entry!r} in log")

    async def wait_event(self, cls: type[Event], **fields: Any) -> None:
        """Wait for an event of type ``cls`` with these fields (``supervisor=``, ``child=``...)."""

        def seen() -> bool:
            return any(
                all(e.fields().get(key) == value for key, value in fields.items())
                for e in self.of(cls)
            )

        await wait_until(seen, interval=0.001, what=f"event {cls.__name__} {fields}")


async def settle_exit(sup: Supervisor, worker: Worker) -> None:
    """Wait until ``worker`` has ended and ``sup`` has dealt with its exit.

    The child's task posts its exit to the supervisor before anything else can
    run, so a runtime call made afterwards is served after the exit.
    """
    await worker.done.wait()
    await sup.count_children()


async def settle_restarts(sup: Supervisor, *, limit: int = 10_000) -> None:
    """Wait until ``sup`` has no restart in flight (or has ended).

    A failed restart is retried as a message the supervisor posts to itself,
    after the calls already queued: each call lets the next retry through.
    Only for supervisors without backoff (a backoff keeps a child restarting).
    """
    for _ in range(limit):
        try:
            records = await sup.which_children()
        except SupervisorNotRunning:
            return
        if all(record.status is not ChildStatus.RESTARTING for record in records):
            return
    raise AssertionError(f"{sup!r} still restarting after {limit} calls")


class Harness:
    """Runs a supervisor in a task group and keeps what its ``run`` raised."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.error: BaseException | None = None
        self.ended = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.sup.run(task_status=task_status)
        except Exception as exc:
            self.error = exc
        finally:
            self.ended.set()

    async def wait_ended(self) -> BaseException | None:
        await self.ended.wait()
        return self.error


@asynccontextmanager
async def supervising(sup: Supervisor, *, timeout: float = 10.0) -> AsyncIterator[Harness]:
    """Start ``sup`` (waiting for its children), yield, then stop it and wait for it."""
    harness = Harness(sup)
    with anyio.fail_after(timeout):
        async with anyio.create_task_group() as tg:
            tg.start_soon(harness.run)
            await sup.started()
            yield harness
            sup.request_stop()
