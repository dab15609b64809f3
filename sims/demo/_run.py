"""Run a workflow file on an infrastructure twin for a while, watching it; return what it saw.

:func:`run_on_twin` is the demo's engine, and the whole-workflow tests': it
starts the twin's sites (a real ``nats-server`` per site, a shaped link proxy
on each uplink), connects one fabric per site for the workflow as ``diaspora
run`` does, declares the streams and bridges, runs the supervision tree with
every child on its site, applies the fault schedule, samples the plan's
counters and tails once a second, and stops the tree after ``seconds`` (or
once the plan says the run is done). The result (:class:`RunResult`) holds
every sample and record; :mod:`sims.demo._report` turns it into a report.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from diaspora.errors import ConfigError
from diaspora.events import MemorySink, TeeSink
from diaspora.fabric import BridgeMonitor, Fabric, ensure_bridge
from diaspora.log import get_logger
from diaspora.supervision import Supervisor
from diaspora.supervision._runnable import run_until
from diaspora.testing import PidWatcher
from diaspora.workflow import TreeConfig, load_config
from sims.demo._observe import Counter, LinkLag, Observer, Sample, Tail
from sims.demo._progress import Progress, make_progress
from sims.demo._tree import override_args
from sims.twin import FaultRecord, Twin
from sims.twinspec import TwinFault, TwinSpec

__all__ = ["Plan", "RunResult", "run_on_twin"]

_log = get_logger()
#: Fabric options for the workflow: reconnect fast after a server restart or a cut.
_FABRIC_OPTIONS: dict[str, Any] = {"backoff_initial": 0.02, "backoff_max": 0.5}


@dataclass(frozen=True)
class Plan:
    """What to watch in a workflow: stage counters, bridge lags, streams to tail, the status
    line made from them, and when the run may end early."""

    counters: tuple[Counter, ...]
    lags: tuple[LinkLag, ...]
    tails: tuple[Tail, ...]
    #: (the latest sample, every tail's records so far by subject) -> the status to show
    status: Callable[[Sample, dict[str, list[dict[str, Any]]]], dict[str, Any]]
    #: the same -> whether the run has done what it came for (ends before ``seconds``, once
    #: every fault of the schedule has been applied and lifted)
    done: Callable[[Sample, dict[str, list[dict[str, Any]]]], bool] | None = None
    #: the same -> whether the fault schedule may start (its times count from then); None:
    #: from when every child has started
    faults_from: Callable[[Sample, dict[str, list[dict[str, Any]]]], bool] | None = None


@dataclass
class RunResult:
    """Everything one run saw."""

    workflow: str
    twin: dict[str, Any]
    seconds: float
    started_at: float
    samples: list[Sample]
    records: dict[str, list[dict[str, Any]]]
    faults: list[FaultRecord]
    events: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False
    wall_s: float = 0.0


def _event_kinds(sink: MemorySink) -> dict[str, int]:
    out: dict[str, int] = {}
    for event in sink.events:
        out[event.kind] = out.get(event.kind, 0) + 1
    return out


async def run_on_twin(
    workflow: str | Path | TreeConfig,
    twin_spec: TwinSpec,
    plan: Plan,
    *,
    seconds: float,
    schedule: tuple[TwinFault, ...] | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    state_dir: str | Path | None = None,
    progress: Progress | None = None,
    interval: float = 1.0,
    on_sample: Callable[[Sample, Twin], Awaitable[None]] | None = None,
) -> RunResult:
    """Run ``workflow`` on the twin for ``seconds`` (see the module's docstring)."""
    config = workflow if isinstance(workflow, TreeConfig) else load_config(workflow)
    if not config.sites:
        raise ConfigError(f"{config.source}: declares no [sites]: the twin runs sites")
    twin_spec.check_sites_match(config.sites, config.source)
    if overrides:
        config = override_args(config, overrides)
    if schedule is not None:
        twin_spec = twin_spec.with_schedule(schedule)
    view = progress if progress is not None else make_progress()
    records: dict[str, list[dict[str, Any]]] = {t.subject: [] for t in plan.tails}
    started_at = time.time()
    wall = time.monotonic()
    events = MemorySink()
    async with (
        Twin(twin_spec, state_dir=state_dir) as twin,
        contextlib.AsyncExitStack() as stack,
        anyio.create_task_group() as tg,
    ):
        fabrics: dict[str, Fabric] = {}
        for spec in config.sites:
            fabric = Fabric(
                twin.sites[spec.name].url, name=f"{config.name}-{spec.name}", **_FABRIC_OPTIONS
            )
            fabrics[spec.name] = await stack.enter_async_context(fabric)
        watchers = [await stack.enter_async_context(PidWatcher(f)) for f in fabrics.values()]
        twin.pids = _AnyPid(watchers)
        for name, fabric in fabrics.items():
            await config.declare_streams(fabric, site=name)
        for decl in config.bridges:
            await ensure_bridge(fabrics[decl.target], decl.bridge(config.sites))
        for decl in config.bridges:
            monitor = BridgeMonitor(fabrics[decl.target], decl.bridge(config.sites), keep=True)
            tg.start_soon(monitor.run)
        root_site = config.site_of(config.name)
        assert root_site is not None  # the parser places the root when sites exist
        root = fabrics[root_site]
        supervisor = Supervisor(
            config.bind_sites(fabrics), name=config.name, on_event=TeeSink(root, events)
        )
        observer = Observer(twin.fabrics, plan.counters, plan.lags)
        stopped_early = False

        running, faults_done, faults_may = anyio.Event(), anyio.Event(), anyio.Event()
        if plan.faults_from is None:
            faults_may.set()

        async def apply_faults() -> None:  # from when every child has started: a fault that hits
            await running.wait()  # a starting tree fails its start (OTP), not a running one
            await faults_may.wait()
            await twin.run_schedule(origin=origin)
            faults_done.set()  # a run may end early only once its schedule has been run

        async def watch(stop: Callable[[], None], _kill: Callable[[], None]) -> None:
            nonlocal stopped_early
            deadline = anyio.current_time() + seconds
            async with anyio.create_task_group() as inner:
                inner.start_soon(apply_faults)
                with view:
                    while anyio.current_time() < deadline:
                        sample = await observer.sample()
                        for tail in plan.tails:
                            records[tail.subject] += await tail.read(twin.fabrics[tail.site])
                        view.show(plan.status(sample, records))
                        if plan.faults_from is not None and plan.faults_from(sample, records):
                            faults_may.set()
                        if on_sample is not None:
                            await on_sample(sample, twin)
                        finished = plan.done is not None and plan.done(sample, records)
                        if finished and faults_done.is_set():
                            stopped_early = True
                            break
                        await anyio.sleep(interval)
                inner.cancel_scope.cancel()
            stop()

        observer.started = time.monotonic()
        origin = anyio.current_time()
        failure: BaseException | None = None
        try:
            await run_until(supervisor, watch, task_status=_Started(running))
        except Exception as exc:  # raised below, outside the task group (not in a group)
            failure = exc
            tg.cancel_scope.cancel()
        if failure is None:
            twin.heal()
            for tail in plan.tails:  # what the last moments wrote
                records[tail.subject] += await tail.read(twin.fabrics[tail.site])
            await observer.sample()
        tg.cancel_scope.cancel()
        twin_report = twin.report()
        faults = list(twin.log)
    if failure is not None:
        raise failure
    return RunResult(
        workflow=config.source,
        twin=twin_report,
        seconds=seconds,
        started_at=started_at,
        samples=observer.samples,
        records=records,
        faults=faults,
        events=_event_kinds(events),
        stopped_early=stopped_early,
        wall_s=time.monotonic() - wall,
    )


class _Started(TaskStatus[None]):
    """The tree's ``task_status``: sets ``event`` once every child has started."""

    def __init__(self, event: anyio.Event) -> None:
        self.event = event

    def started(self, value: None = None) -> None:
        self.event.set()


class _AnyPid:
    """The pid of an actor from whichever site's events name it."""

    def __init__(self, watchers: list[PidWatcher]) -> None:
        self.watchers = watchers

    async def wait_pid(self, target: str, *, timeout: float = 30.0, exclude: Any = ()) -> int:
        deadline = anyio.current_time() + timeout
        while True:
            for watcher in self.watchers:
                pid = watcher.latest(target, exclude)
                if pid is not None:
                    return pid
            if anyio.current_time() > deadline:
                raise TimeoutError(f"no live process runs {target!r} after {timeout} s")
            await anyio.sleep(0.1)
