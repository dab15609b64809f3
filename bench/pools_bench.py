r"""Pools: time to heal a site back to its minimum after every worker there is SIGKILLed.

- **process provider**: a pool keeping 2 idle workers at a site (process
  nodes on an embedded server); both SIGKILLed; measured from the kill to
  both replacements running (their subtree started), p50/p99 over the
  rounds, with ``standby=False`` (a new interpreter per worker) and with the
  warm standby (the default). Baseline: a bare spawn of the same two worker
  processes at once, :class:`~diaspora.workflow.ProcessNode`\ s with the same
  empty subtree started directly (spawn → ``started``).
- **parsl provider** (when Parsl is installed): a pool keeping 1 worker on
  Parsl's LocalProvider; the worker's process SIGKILLed; kill → a new worker
  running. Baseline: Parsl's own recovery with its default settings (default
  block error handler and heartbeats): the same kill of an app's worker
  process, then the time until a new app runs on that executor.
- **re-home** (:mod:`bench.pools_rehome`): a movable actor's site lost (link
  cut, server killed) → its output from another site; its site back → its
  output from home again; both against a restart in place (its worker killed).
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench.pools_rehome import rehome_rounds
from bench.report import Report, Row
from diaspora.compute import PoolController, PoolSpec, SiteQuota
from diaspora.events import MemorySink
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.supervision import ChildContext, SupervisorSpec
from diaspora.testing import wait_until
from diaspora.workflow import ProcessNode
from diaspora.workflow._poolprocess import ProcessProvider

GROUP = "pools"


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _rows(
    report: Report, name: str, values: list[float], baseline: str, base: list[float], **extra: Any
) -> None:
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        report.add(
            Row(
                GROUP,
                f"{name} {label}",
                _p(values, q) * 1e3,
                "ms",
                f"{baseline} {label}",
                _p(base, q) * 1e3,
                {"rounds": len(values), "mean_s": statistics.fmean(values), **extra},
            )
        )


async def _running(provider: Any, site: str, n: int, dead: set[int]) -> bool:
    pids = set(provider.pids(site))
    states = [w for w in provider.workers() if w.site == site and w.state.value == "running"]
    return len(states) >= n and not pids & dead


async def _wait(condition: Any, timeout: float) -> None:
    """Poll ``condition`` every 5 ms (a provider's worker list has no event to wait on)."""
    await wait_until(condition, timeout=timeout, interval=0.005)


async def _heal_rounds(provider: Any, rounds: int, want: int, timeout: float) -> list[float]:
    spec = PoolSpec("bench", {"hpc": SiteQuota(want, want + 1)}, retry_after=None, intensity=1000)
    controller = PoolController(spec, provider, events=MemorySink())
    times = []
    async with anyio.create_task_group() as tg:
        await tg.start(controller.run)
        with anyio.fail_after(timeout):
            await controller.ready.wait()
        for _ in range(rounds):
            await _wait(lambda: _running(provider, "hpc", want, set()), timeout)
            await anyio.sleep(0.3)  # let a standby, if any, get ready
            pids = set(provider.pids("hpc"))
            t0 = time.perf_counter()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            await _wait(lambda: _running(provider, "hpc", want, pids), timeout)  # noqa: B023
            times.append(time.perf_counter() - t0)
        controller.request_stop()
    return times


async def _bare_spawns(fabric: Fabric, rounds: int, n: int) -> list[float]:
    """Spawn → ``started`` of ``n`` bare worker processes at once (what a heal of n does)."""
    times = []
    for i in range(rounds):
        nodes = [
            ProcessNode(
                SupervisorSpec([]),
                fabric,
                context=ChildContext("bench", f"bare-{i}-{k}"),
                standby=False,
                events=MemorySink(),
            )
            for k in range(n)
        ]
        async with anyio.create_task_group() as tg:
            t0 = time.perf_counter()
            async with anyio.create_task_group() as starting:
                for node in nodes:
                    starting.start_soon(tg.start, node.run)
            times.append(time.perf_counter() - t0)
            for node in nodes:
                node.request_stop()
    return times


async def _process(report: Report, quick: bool) -> None:
    rounds = 3 if quick else 10
    async with EmbeddedServer() as server, Fabric(server.url, name="bench-pools") as fabric:
        base = await _bare_spawns(fabric, rounds, 2)
        cold = await _heal_rounds(
            ProcessProvider(fabric, path="bench", standby=False), rounds, 2, 60
        )
        _rows(report, "process: heal 2 killed workers", cold, "bare spawn of 2 workers", base)
        warm = await _heal_rounds(ProcessProvider(fabric, path="bench"), rounds, 2, 60)
        _rows(
            report, "process+standby: heal 2 killed workers", warm, "bare spawn of 2 workers", base
        )


def _parsl_sleeper(pid_file: str) -> None:
    import os
    import time

    with open(pid_file, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(3600)


def _parsl_quick() -> int:
    return 1


def _parsl_baseline(rounds: int, run_dir: str) -> list[float]:
    """Parsl's own recovery, default settings: kill an app's worker, time a new app."""
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    from diaspora.workflow._parsl import bin_on_path

    bin_on_path()
    config = Config(
        executors=[
            HighThroughputExecutor(
                label="hpc",
                provider=LocalProvider(init_blocks=1, max_blocks=1),
                max_workers_per_node=1,
            )
        ],
        run_dir=run_dir,
        initialize_logging=False,
    )
    dfk = parsl.DataFlowKernel(config)
    sleeper = parsl.python_app(_parsl_sleeper, data_flow_kernel=dfk)
    quick = parsl.python_app(_parsl_quick, data_flow_kernel=dfk)
    quick().result(timeout=120)
    times = []
    try:
        for i in range(rounds):
            pid_file = Path(run_dir) / f"pid-{i}"
            sleeper(str(pid_file))
            deadline = time.monotonic() + 60
            while not pid_file.exists() or not pid_file.read_text():
                if time.monotonic() > deadline:
                    raise TimeoutError("the Parsl sleeper never started")
                time.sleep(0.01)
            t0 = time.perf_counter()
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            quick().result(timeout=300)
            times.append(time.perf_counter() - t0)
    finally:
        dfk.cleanup()
    return times


async def _parsl(report: Report, quick: bool) -> None:
    try:
        import parsl  # noqa: F401
    except ImportError:
        print("pools: Parsl is not installed (pip install diaspora[pools]): parsl rows skipped")
        return
    from diaspora.workflow._parsl import ParslProvider

    rounds = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-parsl-") as run_dir:
        base = await anyio.to_thread.run_sync(_parsl_baseline, rounds, str(Path(run_dir) / "base"))
        async with EmbeddedServer() as server, Fabric(server.url, name="bench-parsl") as fabric:
            provider = ParslProvider(
                {"hpc": fabric},
                path="bench",
                blocks={"hpc": 2},
                run_dir=str(Path(run_dir) / "pool"),
                heartbeat_timeout=3.0,
            )
            times = await _heal_rounds(provider, rounds, 1, 180)
        _rows(report, "parsl: heal a killed worker", times, "parsl default recovery", base)


async def _rehome(report: Report, quick: bool) -> None:
    times = await rehome_rounds(2 if quick else 5)
    base = times["restart"]
    _rows(report, "process: re-home off a lost site", times["rehome"], "restart in place", base)
    placed = statistics.fmean(times["placed"])
    _rows(report, "process: return home", times["home"], "restart in place", base, placed_s=placed)


async def run(report: Report, quick: bool) -> None:
    await _process(report, quick)
    await _rehome(report, quick)
    await _parsl(report, quick)
