"""Pool workers cut off from their site do not keep running their actors: a Parsl worker whose
server is gone stops itself (before its provider counts it gone), and a process worker that
does not stop within the provider's grace after SIGTERM is SIGKILLed."""

from __future__ import annotations

import pickle

import anyio
import pytest

from diaspora.compute import PoolActor, WorkerOrder, WorkerState
from diaspora.errors import WorkerFenced
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.testing import wait_until
from diaspora.workflow import ActorStart
from diaspora.workflow._parslworker import WorkerJob, _serve
from diaspora.workflow._poolprocess import ProcessProvider, worker_tree
from tests.compute.pool_actors import Tally

pytestmark = pytest.mark.anyio


async def test_a_parsl_worker_cut_off_from_its_server_stops_itself() -> None:
    order = WorkerOrder("recon", "recon-hpc-1", "hpc", (PoolActor("root.t", ActorStart(Tally)),))
    async with EmbeddedServer() as server:
        async with Fabric(server.url) as fabric:
            await fabric.ensure_stream("jobs")
        job = WorkerJob(
            "recon",
            order.id,
            "root.recon-hpc-1",
            (server.url,),
            pickle.dumps(worker_tree(order)),
            heartbeat=0.1,
            fence_after=0.5,
        )
        started = anyio.Event()
        outcome: list[BaseException] = []

        async def worker() -> None:
            try:
                await _serve(job)
            except BaseException as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            async with Fabric(server.url) as watcher:

                async def on_status(msg: object) -> None:
                    started.set()

                async with watcher.subscription("diaspora.pool.recon.*.status", on_status):
                    with anyio.fail_after(30):
                        await started.wait()
            await server.kill()
            await wait_until(lambda: bool(outcome), timeout=30, what="the worker stopped itself")
    (raised,) = outcome
    fenced = raised.exceptions[0] if isinstance(raised, BaseExceptionGroup) else raised
    while isinstance(fenced, BaseExceptionGroup):
        fenced = fenced.exceptions[0]
    assert isinstance(fenced, WorkerFenced), repr(raised)


async def test_a_process_worker_that_does_not_stop_in_its_grace_is_killed(fabric: Fabric) -> None:
    provider = ProcessProvider(fabric, path="root", stop_grace=0.01, standby=False)
    async with provider:
        await provider.start(WorkerOrder("recon", "w1", "a"))
        await wait_until(
            lambda: provider.workers()[0].state is WorkerState.RUNNING, timeout=60, what="running"
        )
        await provider.stop("w1")
        await wait_until(
            lambda: provider.workers()[0].state is WorkerState.EXITED, timeout=30, what="exited"
        )
        (info,) = provider.workers()
        assert "SIGKILL" in (info.error or ""), info
