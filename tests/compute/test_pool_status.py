"""``diaspora status`` shows a running pool: each site's workers (running, wanted, min and max),
where its actor runs, and a site's deficit while it heals a killed worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import anyio
import pytest

from diaspora.compute import PoolActor, PoolController, PoolSpec, SiteQuota
from diaspora.compute._poolstatus import read_pools, show_pools
from diaspora.fabric import Fabric
from diaspora.testing import wait_until
from diaspora.workflow import ActorStart
from diaspora.workflow._poolprocess import ProcessProvider
from tests.compute.pool_actors import Tally

pytestmark = pytest.mark.anyio


async def status(url: str, *flags: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = await anyio.run_process(
        [sys.executable, "-m", "diaspora", "status", "--url", url, *flags],
        env=env,
        stderr=subprocess.PIPE,
    )
    return done.stdout.decode()


async def test_status_shows_the_pools_sites_workers_actors_and_a_deficit(
    fabric: Fabric, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = PoolSpec(
        "recon",
        {"edge": SiteQuota(1, 2), "hpc": SiteQuota(1, 1)},
        actors=(PoolActor("root.tally", ActorStart(Tally), site="hpc"),),
    )
    provider = ProcessProvider(fabric, path="root", standby=False)
    controller = PoolController(spec, provider, fabric=fabric)
    async with anyio.create_task_group() as tg:
        await tg.start(controller.run)
        with anyio.fail_after(60):
            await controller.ready.wait()
        (hpc_worker,) = controller.live("hpc")
        rounds = controller.rounds
        await wait_until(lambda: controller.rounds > rounds, timeout=10, what="a round written")
        text = await status(fabric.urls[0])
        assert "pool recon (process): 2 worker(s), total_min 0" in text
        assert "site edge: 1 of 1 running, want 1 (min 1, max 2)" in text
        assert "site hpc: 1 of 1 running, want 1 (min 1, max 1)" in text
        assert f"actor root.tally: at hpc on {hpc_worker}" in text

        (pid,) = provider.pids("edge")
        os.kill(pid, signal.SIGKILL)
        seen: list[float] = []

        async def deficit_then_healed() -> bool:
            (record,) = await read_pools(fabric)
            edge = record["sites"]["edge"]
            if edge["deficit_s"] is not None:
                seen.append(edge["deficit_s"])
            return bool(seen) and edge["deficit_s"] is None and edge["running"] == 1

        await wait_until(deficit_then_healed, timeout=30, what="a deficit, then healed")
        assert await show_pools(fabric.urls[0], as_json=True) == 0  # what --json prints
        (line,) = capsys.readouterr().out.splitlines()
        record = json.loads(line)
        assert record["sites"]["edge"]["running"] == 1
        assert record["actors"]["root.tally"]["worker"] == hpc_worker
        controller.request_stop()
