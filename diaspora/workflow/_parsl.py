"""The ``parsl`` provider: a pool's workers as Parsl apps on Parsl blocks, one executor per site.

Each site of the pool is a Parsl ``HighThroughputExecutor`` (label: the
site) whose provider is the one ``PoolSpec.parsl[site]`` names: ``local``
(Parsl's ``LocalProvider``, the default), ``slurm`` (``SlurmProvider``) or
``pbspro`` (``PBSProProvider``), with the table's other keys as its keyword
arguments (``partition``, ``account``, ``walltime``, ``worker_init``...);
``executor = {...}`` passes keyword arguments to the executor
(``heartbeat_threshold``, ``address``...). A worker is one long-running app
(:func:`~diaspora.workflow._parslworker.run_worker`) on one Parsl worker
(``max_workers_per_node = 1``, ``max_blocks`` = the site's max): Parsl
acquires the block, the app connects to the site's server and runs its
actors.

Two Parsl defaults would defeat a pool and are changed
(see docs/pools.md): the block error handler is off
(``block_error_handler=False``: Parsl's default marks a site dead for good
once its only block fails), and the pool, not ``min_blocks``, keeps each
site at its minimum (Parsl takes no action while idle at ``min_blocks``).
Parsl is imported only when a pool uses it (``pip install diaspora[pools]``);
its interchange runs the ``interchange.py`` script, so the interpreter's
``bin`` directory is put on ``PATH``.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio

from diaspora import codec
from diaspora.compute._anchor import reaches
from diaspora.compute._guests import ask_worker
from diaspora.compute._provider import WorkerInfo, WorkerOrder, WorkerState
from diaspora.errors import ConfigError, DecodeError
from diaspora.log import get_logger
from diaspora.workflow._parslworker import POOL_PREFIX, WorkerJob, run_worker, stop_subject
from diaspora.workflow._poolprocess import worker_tree

if TYPE_CHECKING:
    from diaspora.fabric import Fabric, Inbound

__all__ = ["ParslProvider", "bin_on_path", "parsl_config"]

#: Seconds without a status line from a started worker after which it counts as gone.
DEFAULT_HEARTBEAT_TIMEOUT: Final = 5.0
_PROVIDERS: Final = {
    "local": "LocalProvider",
    "slurm": "SlurmProvider",
    "pbspro": "PBSProProvider",
}


def _import_parsl() -> Any:
    try:
        import parsl
    except ImportError:
        raise ConfigError(
            'provider = "parsl" needs Parsl: pip install "diaspora[pools]" (or parsl)'
        ) from None
    return parsl


def bin_on_path() -> None:
    """Put this interpreter's ``bin`` on ``PATH``: Parsl runs ``interchange.py`` and
    ``process_worker_pool.py`` from there (a virtualenv not activated has it elsewhere)."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def parsl_config(
    sites: Mapping[str, int], options: Mapping[str, Mapping[str, Any]], run_dir: str
) -> Any:
    """The ``parsl.Config`` of a pool: one executor per site, ``sites[site]`` blocks at most."""
    _import_parsl()
    import parsl.providers
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor

    executors = []
    for site, most in sites.items():
        table = dict(options.get(site, {}))
        kind = table.pop("provider", "local")
        executor_kwargs = dict(table.pop("executor", {}))
        provider_cls = getattr(parsl.providers, _PROVIDERS[kind])
        table.setdefault("init_blocks", 0)
        table.setdefault("min_blocks", 0)
        table.setdefault("max_blocks", most)
        try:
            provider = provider_cls(**table)
        except TypeError as exc:
            raise ConfigError(f"pools: parsl.{site}: {_PROVIDERS[kind]}: {exc}") from None
        executor_kwargs.setdefault("max_workers_per_node", 1)
        executor_kwargs.setdefault("heartbeat_period", 2)
        executor_kwargs.setdefault("heartbeat_threshold", 10)
        executors.append(
            HighThroughputExecutor(
                label=site,
                provider=provider,
                block_error_handler=False,  # else one lost block kills the site for good
                working_dir=str(Path(run_dir) / site),
                **executor_kwargs,
            )
        )
    return Config(
        executors=executors,
        strategy="simple",
        strategy_period=0.5,
        max_idletime=5.0,
        run_dir=run_dir,
        initialize_logging=False,
    )


@dataclass(slots=True)
class _Worker:
    order: WorkerOrder
    future: Future[int] | None = None
    state: WorkerState = WorkerState.STARTING
    pid: int | None = None
    heard: float = field(default_factory=time.monotonic)
    stopping: bool = False
    error: str | None = None


class ParslProvider:
    """Acquires each worker as a Parsl app on its site's executor (see the module).

    ``fabrics`` maps each site to a connected fabric (its workers connect to
    the same server); ``options`` is ``PoolSpec.parsl``; ``max_blocks``
    defaults to each site's count in ``blocks`` (else 1).
    """

    def __init__(
        self,
        fabrics: Mapping[str, Fabric],
        options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        path: str | None = None,
        blocks: Mapping[str, int] | None = None,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        run_dir: str | None = None,
    ) -> None:
        self._fabrics = dict(fabrics)
        self.options = dict(options or {})
        self.path = path or "pool"
        self.blocks = {site: (blocks or {}).get(site, 1) for site in self._fabrics}
        self.heartbeat_timeout = heartbeat_timeout
        self.run_dir = run_dir
        self._own_run_dir: str | None = None
        self._workers: dict[str, _Worker] = {}
        self._dfk: Any = None
        self._apps: dict[str, Any] = {}
        self._stack: Any = None
        self._log = get_logger(provider="parsl")

    async def __aenter__(self) -> Self:
        import contextlib

        parsl = _import_parsl()
        bin_on_path()
        if self.run_dir is None:  # Parsl's logs and scripts: ours to delete on exit
            self.run_dir = self._own_run_dir = tempfile.mkdtemp(prefix="diaspora-parsl-")
        run_dir = self.run_dir
        config = parsl_config(self.blocks, self.options, run_dir)
        self._dfk = await anyio.to_thread.run_sync(parsl.DataFlowKernel, config)
        self._apps = {
            site: parsl.python_app(run_worker, executors=[site], data_flow_kernel=self._dfk)
            for site in self._fabrics
        }
        self._stack = contextlib.AsyncExitStack()
        await self._stack.__aenter__()
        try:
            for fabric in {id(f): f for f in self._fabrics.values()}.values():
                await self._stack.enter_async_context(
                    fabric.subscription(f"{POOL_PREFIX}.*.*.status", self._on_status, flush=True)
                )
        except BaseException:
            await self.__aexit__(*sys.exc_info())
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            for wid in list(self._workers):
                await self.stop(wid)
            futures = [w.future for w in self._workers.values() if w.future is not None]
            if futures:  # the workers stopping gracefully (their actors checkpoint)
                await anyio.to_thread.run_sync(
                    functools.partial(concurrent.futures.wait, futures, timeout=10)
                )
            if self._stack is not None:
                await self._stack.aclose()
            if self._dfk is not None:
                await anyio.to_thread.run_sync(self._dfk.cleanup)
                self._dfk = None
            if self._own_run_dir is not None:
                shutil.rmtree(self._own_run_dir, ignore_errors=True)
                self.run_dir = self._own_run_dir = None

    async def _on_status(self, msg: Inbound) -> None:
        worker_id = msg.subject.split(".")[-2]
        worker = self._workers.get(worker_id)
        if worker is None:
            return
        try:
            status = codec.decode(msg.data)
        except DecodeError:
            return
        worker.heard = time.monotonic()
        worker.pid = status.get("pid", worker.pid)
        if status.get("t") == "started" and worker.state is WorkerState.STARTING:
            worker.state = WorkerState.RUNNING
        if worker.stopping:  # told to stop before it started: tell it again
            await self._fabrics[worker.order.site].publish_core(
                stop_subject(worker.order.pool, worker_id), b""
            )

    async def start(self, order: WorkerOrder) -> None:
        fabric = self._fabrics[order.site]
        job = WorkerJob(
            pool=order.pool,
            worker=order.id,
            supervisor=f"{self.path}.{order.id}",
            urls=tuple(fabric.urls),
            tree=pickle.dumps(worker_tree(order)),
            auth=pickle.dumps(fabric.auth) if fabric.auth is not None else None,
            fence_after=self.heartbeat_timeout / 2,
            sys_path=tuple(sys.path),
        )
        worker = self._workers[order.id] = _Worker(order)
        submit = self._apps[order.site]

        def call() -> Future[int]:
            future: Future[int] = submit(job)
            return future

        worker.future = await anyio.to_thread.run_sync(call)

    async def stop(self, worker: str, *, grace: float | None = None) -> None:
        # a worker cut off from its server stops itself after fence_after: grace is that
        found = self._workers.get(worker)
        if found is None:
            return
        found.stopping = True
        await self._fabrics[found.order.site].publish_core(
            stop_subject(found.order.pool, worker), b""
        )

    def workers(self) -> list[WorkerInfo]:
        now = time.monotonic()
        out = []
        for wid, worker in self._workers.items():
            future = worker.future
            if worker.state is not WorkerState.EXITED:
                if future is not None and future.done():
                    worker.state = WorkerState.EXITED
                    exc = future.exception()
                    worker.error = repr(exc) if exc is not None else None
                elif (
                    worker.state is WorkerState.RUNNING
                    and now - worker.heard > self.heartbeat_timeout
                ):
                    worker.state = WorkerState.EXITED  # silent: its process or block is gone
                    worker.error = f"silent for {now - worker.heard:.1f} s"
            out.append(WorkerInfo(wid, worker.order.site, worker.state, worker.pid, worker.error))
        return out

    def forget(self, worker: str) -> None:
        found = self._workers.get(worker)
        if found is not None and found.state is WorkerState.EXITED:
            del self._workers[worker]

    async def host(self, worker: str, actor: str) -> bool:
        return await ask_worker(self._workers.get(worker), self._fabrics.__getitem__, "host", actor)

    async def release(self, worker: str, actor: str) -> bool:
        return await ask_worker(
            self._workers.get(worker), self._fabrics.__getitem__, "release", actor
        )

    async def reaches(self, site: str, domain: str) -> bool:
        return await reaches(self._fabrics[site], domain)

    async def health(self, site: str) -> bool:
        if not self._fabrics[site].is_connected or self._dfk is None:
            return False
        executor = self._dfk.executors.get(site)
        return executor is not None and not executor.bad_state_is_set

    def pids(self, site: str) -> list[int]:
        """The pids of ``site``'s running workers (for tests that kill them)."""
        return [
            w.pid
            for w in self._workers.values()
            if w.order.site == site and w.state is WorkerState.RUNNING and w.pid is not None
        ]
