"""The body of a Parsl-provided pool worker: runs in a Parsl worker process, imports no Parsl.

:func:`run_worker` is the Parsl app's function. It connects to its site's
server, runs the worker's subtree (its actors, each under its own id) and,
while it runs, reports on core NATS subjects the provider listens to:
``diaspora.pool.<pool>.<worker>.status`` carries ``{"t": "started", "pid"}``
once the subtree started and ``{"t": "hb"}`` every ``heartbeat`` seconds;
a message on ``diaspora.pool.<pool>.<worker>.stop`` stops it gracefully
(then it returns 0). A crash of the subtree raises; ``kill -9`` of the
process (or the loss of its block) fails the app's future.

>>> status_subject("recon", "recon-hpc-1")
'diaspora.pool.recon.recon-hpc-1.status'
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from dataclasses import dataclass
from typing import Any, Final

import anyio
from anyio.abc import TaskStatus

from diaspora import codec
from diaspora.errors import WorkerFenced

__all__ = ["WorkerJob", "run_worker", "status_subject", "stop_subject"]

POOL_PREFIX: Final = "diaspora.pool"


def status_subject(pool: str, worker: str) -> str:
    return f"{POOL_PREFIX}.{pool}.{worker}.status"


def stop_subject(pool: str, worker: str) -> str:
    return f"{POOL_PREFIX}.{pool}.{worker}.stop"


@dataclass(frozen=True, slots=True)
class WorkerJob:
    """What a Parsl worker needs: where to connect, who it is, and its subtree (pickled)."""

    pool: str
    worker: str
    supervisor: str  #: the worker's supervisor name (``<pool path>.<worker>``)
    urls: tuple[str, ...]
    tree: bytes  #: a pickled :class:`~diaspora.supervision.SupervisorSpec`
    auth: bytes | None = None  #: pickled :class:`~diaspora.fabric.Auth`
    heartbeat: float = 0.5
    #: seconds cut off from its server after which the worker stops itself: before the
    #: provider, hearing nothing, counts it gone and its actors start elsewhere
    fence_after: float = 2.5
    #: the submitting process's ``sys.path``, put first so the subtree's actors import as
    #: they did there (entries a remote node lacks are skipped by the import system)
    sys_path: tuple[str, ...] = ()


def run_worker(job: WorkerJob) -> int:
    """Run ``job``'s subtree until it is told to stop (0) or fails (raises)."""
    sys.path[:] = [*job.sys_path, *(p for p in sys.path if p not in job.sys_path)]
    return anyio.run(_serve, job)


async def _serve(job: WorkerJob) -> int:
    from diaspora.fabric import Fabric, Inbound
    from diaspora.supervision._binding import bind_fabric
    from diaspora.supervision._supervisor import Supervisor

    auth: Any = pickle.loads(job.auth) if job.auth is not None else None
    async with Fabric(list(job.urls), name=job.supervisor, auth=auth) as fabric:
        spec = bind_fabric(pickle.loads(job.tree), fabric)
        supervisor = Supervisor(spec, name=job.supervisor, on_event=fabric)
        status = status_subject(job.pool, job.worker)

        async def on_stop(msg: Inbound) -> None:
            supervisor.request_stop()

        async def beat() -> None:
            cut_since: float | None = None
            while True:
                await fabric.publish_core(status, codec.encode({"t": "hb", "pid": os.getpid()}))
                await anyio.sleep(job.heartbeat)
                if fabric.is_connected:
                    cut_since = None
                    continue
                now = time.monotonic()
                cut_since = now if cut_since is None else cut_since
                if now - cut_since >= job.fence_after:
                    raise WorkerFenced(
                        f"pool worker {job.worker!r}: cut off from {job.urls} for "
                        f"{now - cut_since:.1f} s: stopped so that its actors run only once"
                    )

        async with (
            fabric.subscription(stop_subject(job.pool, job.worker), on_stop, flush=True),
            anyio.create_task_group() as tg,
        ):

            async def supervise(*, task_status: TaskStatus[None]) -> None:
                await supervisor.run(task_status=task_status)
                tg.cancel_scope.cancel()  # stopped: no more heartbeats

            await tg.start(supervise)
            await fabric.publish_core(status, codec.encode({"t": "started", "pid": os.getpid()}))
            tg.start_soon(beat)
    return 0
