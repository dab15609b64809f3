"""A fault rig: server, link, running workflow and injector, started once and shared by the
examples of a hypothesis state machine.

Starting a nats-server and a supervision tree with process nodes takes about
a second; a state machine runs hundreds of examples. A :class:`FaultRig`
therefore runs everything in a blocking portal (an event loop in a thread of
its own, so that synchronous hypothesis rules can call into it) for as long
as the ``with`` block lasts:

- an :class:`~diaspora.fabric.EmbeddedServer` (killed, restarted, paused by faults),
- a :class:`~diaspora.testing.LinkProxy` in front of it, through which the
  workflow connects (``link=False``: it connects directly),
- :attr:`FaultRig.fabric`, the test's own connection, straight to the server,
- the :class:`~diaspora.testing.Workflow` (started again if it ever ends),
- an :class:`~diaspora.testing.Injector` bound to all of them,
- an :class:`~diaspora.fabric._publisher.OrderedPublisher` for inputs, and
- the :class:`~diaspora.testing._report.ReliabilityReport` of the run.

Examples keep apart by using fresh keys (:meth:`FaultRig.begin_example`
numbers them) rather than fresh servers.

>>> rig = FaultRig("supervisors/reliability.toml", link=False)
>>> rig.run_id == FaultRig("supervisors/reliability.toml").run_id
False
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import anyio
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal

from diaspora.fabric import EmbeddedServer, Fabric, LinkProxy
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.log import get_logger
from diaspora.testing._injectors import Injector
from diaspora.testing._report import ReliabilityReport
from diaspora.testing._workflow import Workflow, WorkflowError
from diaspora.workflow import TreeConfig

__all__ = ["FaultRig", "digest", "environ"]

_T = TypeVar("_T")
#: Environment of the workflow's process nodes while a rig runs: quiet logs.
DEFAULT_ENV: Final[Mapping[str, str]] = {"DIASPORA_LOG_LEVEL": "WARNING"}


def digest(outputs: Sequence[Any]) -> str:
    """A short fingerprint of a list of outputs (JSON, sorted keys).

    >>> digest([{"a": 1, "b": 2}]) == digest([{"b": 2, "a": 1}])
    True
    """
    text = json.dumps(list(outputs), sort_keys=True, default=repr)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def environ(changes: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables (which process nodes inherit) for a while.

    >>> import os
    >>> with environ({"DIASPORA_EXAMPLE": "1"}):
    ...     print(os.environ["DIASPORA_EXAMPLE"])
    1
    >>> "DIASPORA_EXAMPLE" in os.environ
    False
    """
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class FaultRig:
    """Runs a workflow under test, with everything needed to break it, until closed.

    ``config`` is the workflow's TOML file (or parsed tree). ``report_path``
    is where :meth:`close` writes the report (``None``: not written).
    ``env`` is set in ``os.environ`` while the rig runs, so that process
    nodes inherit it (default: quiet logs). Use it as a context manager, from
    synchronous code (a test function, a hypothesis state machine).
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | TreeConfig,
        *,
        link: bool = True,
        report_path: str | os.PathLike[str] | None = None,
        name: str = "reliability",
        env: Mapping[str, str] = DEFAULT_ENV,
        call_timeout: float = 120.0,
    ) -> None:
        self.config = config
        self.link = link
        self.report_path = Path(report_path) if report_path is not None else None
        self.env = dict(env)
        self.call_timeout = call_timeout
        #: Unique to this rig: examples build their keys from it.
        self.run_id = uuid.uuid4().hex[:8]
        self.report = ReliabilityReport(name=name)
        #: Processes found alive after a workflow stopped (should stay empty).
        self.orphans: list[int] = []
        #: How many times the workflow had to be started again because it had ended.
        self.workflow_restarts = 0
        #: Every checked key of the run: (number of outputs, :func:`digest` of them).
        self.ledger: dict[str, tuple[int, str]] = {}
        self._example = 0
        self._portal: BlockingPortal | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._session_cm: AbstractContextManager[None] | None = None
        self._env_cm: AbstractContextManager[None] | None = None
        self._server: EmbeddedServer | None = None
        self._proxy: LinkProxy | None = None
        self._fabric: Fabric | None = None
        self._injector: Injector | None = None
        self._publisher: OrderedPublisher | None = None
        self._workflow: Workflow | None = None
        self._restart = anyio.Event()
        self._closing = False
        self._log = get_logger(rig=self.run_id)

    # -- what examples use ----------------------------------------------------------------

    @property
    def portal(self) -> BlockingPortal:
        return self._need(self._portal, "portal")

    @property
    def server(self) -> EmbeddedServer:
        return self._need(self._server, "server")

    @property
    def proxy(self) -> LinkProxy | None:
        return self._proxy

    @property
    def fabric(self) -> Fabric:
        """The test's own connection, straight to the server (not through the link)."""
        return self._need(self._fabric, "fabric")

    @property
    def injector(self) -> Injector:
        return self._need(self._injector, "injector")

    @property
    def publisher(self) -> OrderedPublisher:
        """Publishes inputs in order, effectively once, across server kills."""
        return self._need(self._publisher, "publisher")

    @property
    def workflow(self) -> Workflow:
        """The workflow running now (a new one after it had to be restarted)."""
        return self._need(self._workflow, "workflow")

    def _need(self, value: _T | None, what: str) -> _T:
        if value is None:
            raise RuntimeError(f"FaultRig {self.run_id}: no {what}; use it inside `with rig:`")
        return value

    def call(
        self, fn: Callable[..., Awaitable[_T]], *args: Any, timeout: float | None = None
    ) -> _T:
        """Run ``await fn(*args)`` in the rig's event loop; ``TimeoutError`` after ``timeout``
        (default ``call_timeout``) seconds."""
        limit = self.call_timeout if timeout is None else timeout

        async def bounded() -> _T:
            with anyio.fail_after(limit):
                return await fn(*args)

        return self.portal.call(bounded)

    def begin_example(self) -> int:
        """Number the next example (make its keys from ``run_id`` and this number); start the
        workflow again first if it ended or stopped running."""
        self._example += 1
        self.call(self._ensure_workflow)
        return self._example

    def record_example(self, expected: Mapping[str, Sequence[Any]]) -> None:
        """Keep the fingerprint of an example's expected outputs, for the final sweep."""
        for key, outputs in expected.items():
            self.ledger[key] = (len(outputs), digest(outputs))

    async def wait_pid(
        self, target: str, *, timeout: float = 30.0, exclude: Collection[int] = ()
    ) -> int:
        """The live pid of ``target`` in the current workflow (the injector's pid source)."""
        return await self.workflow.wait_pid(target, timeout=timeout, exclude=exclude)

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._env_cm = environ(self.env)
        self._env_cm.__enter__()
        try:
            self._portal_cm = start_blocking_portal("asyncio")
            self._portal = self._portal_cm.__enter__()
            self._session_cm = self._portal.wrap_async_context_manager(self._session())
            self._session_cm.__enter__()
        except BaseException:
            self._close_portal()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._session_cm is not None:
                self._session_cm.__exit__(et, ev, tb)
        finally:
            self._session_cm = None
            self._close_portal()
            self.report.extra["orphans"] = self.orphans
            self.report.extra["workflow_restarts"] = self.workflow_restarts
            if self.report_path is not None:
                self.report.write(self.report_path)
                self._log.info("report_written", path=str(self.report_path))

    def _close_portal(self) -> None:
        portal_cm, self._portal_cm = self._portal_cm, None
        self._portal = None
        try:
            if portal_cm is not None:
                portal_cm.__exit__(None, None, None)
        finally:
            env_cm, self._env_cm = self._env_cm, None
            if env_cm is not None:
                env_cm.__exit__(None, None, None)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            server = self._server = await stack.enter_async_context(EmbeddedServer())
            url = server.url
            if self.link:
                self._proxy = await stack.enter_async_context(LinkProxy(server.port))
                url = self._proxy.url
            self._fabric = await stack.enter_async_context(
                Fabric(
                    server.url, name=f"rig-{self.run_id}", backoff_initial=0.02, backoff_max=0.25
                )
            )
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.push_async_callback(self._stop_workflow)
            await tg.start(self._host_workflow, url)
            self._injector = await stack.enter_async_context(
                Injector(self._fabric, server=server, proxy=self._proxy, pids=self)
            )
            self._publisher = await stack.enter_async_context(
                OrderedPublisher(self._fabric, name=f"rig-{self.run_id}-inputs")
            )
            yield

    async def _host_workflow(self, url: str, *, task_status: TaskStatus[None]) -> None:
        """Run the workflow; start a new one whenever :meth:`_ensure_workflow` asks."""
        started = False
        while not self._closing:
            self._restart = anyio.Event()
            async with Workflow(self.config, url, observer=self._fabric) as workflow:
                self._workflow = workflow
                if not started:
                    started = True
                    task_status.started()
                await self._restart.wait()
            self.orphans.extend(workflow.orphans)

    async def _ensure_workflow(self) -> None:
        workflow = self.workflow
        if not workflow.ended:
            try:
                await workflow.wait_running(timeout=30.0)
                return
            except WorkflowError as exc:
                self.report.problems.append(f"example {self._example}: {exc}")
        else:
            self.report.problems.append(
                f"example {self._example}: the workflow had ended ({workflow.error!r})"
            )
        self._log.warning("workflow_restarting", example=self._example)
        self.workflow_restarts += 1
        self._restart.set()
        started = time.monotonic()
        while self._workflow is workflow:
            if time.monotonic() - started > 120:
                raise WorkflowError(f"FaultRig {self.run_id}: the workflow did not start again")
            await anyio.sleep(0.05)
        await self.workflow.wait_running(timeout=60.0)

    async def _stop_workflow(self) -> None:
        self._closing = True
        self._restart.set()
