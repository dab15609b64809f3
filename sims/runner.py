"""Running one scenario: a server, the tree, traffic at a rate and the fault schedule, then a
check of every output against the model.

:func:`run_scenario` starts an :class:`~diaspora.fabric.EmbeddedServer` (its
own temporary store), a :class:`~diaspora.testing.LinkProxy` in front of it
when the scenario has ``link = true`` (the tree connects through it; the
runner's own connection, which publishes inputs and reads outputs, does
not), and the tree in this process as a :class:`~diaspora.testing.Workflow`
(process nodes as the tree file says). Then, concurrently:

- the traffic: input ``n`` goes to key ``k{n % keys}`` at ``n / rate``
  seconds, through an :class:`~diaspora.fabric._publisher.OrderedPublisher`
  (:func:`diaspora.testing._traffic.publish_input`: ``Diaspora-Key`` and
  ``Nats-Msg-Id: key:i``);
- the faults, each applied by an :class:`~diaspora.testing.Injector` at its
  own ``at`` (counted from the first input, one after the other: a fault that
  waits — an order to an actor that is restarting — delays the next ones,
  and the report shows when each really happened; a server fault also waits
  while an earlier one that lifts itself is still in force, then half a
  second more, rather than being refused by a server still down);
- a progress line every second.

Then it heals everything, waits for the tree to be running, for every input
to be acknowledged and every expected output to be stored (each wait at most
``settle_timeout``), stops the tree, and reads the output stream once more
from the start: that last read (nothing can be emitted any more) is what is
checked against the model with :func:`diaspora.testing._traffic.check_outputs`.

Definitions used in the report:

- **recovery_s** of a fault: seconds from the fault's end — when it was
  lifted (its duration ran out, or the final heal) for a lasting fault, when
  it was injected for an instantaneous one — to the moment the output of the
  first input published at or after that end was stored
  (:func:`diaspora.testing._traffic.recovery_time`). It covers restarts,
  reconnections and the catch-up on the backlog queued ahead of that input;
  a fault that overlaps the next one includes that one too. ``null`` when no
  input was published after the end (the traffic had finished) or its output
  is missing.
- **latency_s**: per input, the stored time of its first output minus the
  stored time of the input itself (both server timestamps). Time an input
  spent queued in the publisher while the server was down is not in it.
- **catch_up_s**: from the last input published to the last output stored.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Final

import anyio

from diaspora import codec
from diaspora.errors import DecodeError
from diaspora.events import Crashed, Event, Restarted
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.fabric._reader import StoredMsg, read_stored
from diaspora.log import FilteringBoundLogger, get_logger
from diaspora.testing import (
    ExampleResult,
    FaultKind,
    Injected,
    InjectionError,
    Injector,
    LinkProxy,
    ReliabilityReport,
    Workflow,
    WorkflowError,
)
from diaspora.testing._rig import environ
from diaspora.testing._traffic import check_outputs, publish_input, recovery_time
from sims.progress import follow_progress
from sims.report import recovery_by_kind
from sims.scenario import Scenario, TimedFault, Values
from sims.schedule import SERVER_GAP as _SERVER_GAP
from sims.schedule import build_schedule

__all__ = ["run_scenario", "unplanned"]

#: Environment of the tree's process nodes during a run: their logs would drown the progress.
NODE_ENV: Final[Mapping[str, str]] = {"DIASPORA_LOG_LEVEL": "WARNING"}
_POLL: Final = 0.1

_Input = tuple[str, int]


@dataclass(slots=True)
class _Run:
    """What one run collects while it goes."""

    scenario: Scenario
    seed: int
    log: FilteringBoundLogger
    inputs: dict[str, list[Any]] = field(default_factory=dict)
    sent: list[tuple[float, _Input]] = field(default_factory=list)
    applied: list[tuple[TimedFault, Injected]] = field(default_factory=list)
    not_injected: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    started_at: float = 0.0
    traffic_done: bool = False
    samples: list[dict[str, Any]] = field(default_factory=list)  # sims.progress, each second

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def output(self) -> str:
        return self.scenario.traffic.output

    @property
    def messages(self) -> int:
        return self.scenario.traffic.messages


async def run_scenario(
    scenario: Scenario, *, seed: int | None = None, node_env: Mapping[str, str] = NODE_ENV
) -> ReliabilityReport:
    """Run ``scenario`` once (``seed`` defaults to the file's) and return its report.

    The report's ``ok`` is true when nothing was lost, duplicated, reordered
    or wrong and no problem was noted (a fault not injected, a supervisor that
    gave up, a process left behind...).
    """
    seed = scenario.seed if seed is None else seed
    run = _Run(scenario, seed, get_logger(scenario=scenario.name, seed=seed))
    schedule = build_schedule(scenario, seed)
    report = ReliabilityReport(name=scenario.name)
    traffic = scenario.traffic
    run.inputs = {f"k{n}": [] for n in range(traffic.keys)}
    run.log.info(
        "scenario_started",
        tree=str(scenario.tree_path),
        link=scenario.link,
        messages=traffic.messages,
        rate=traffic.rate,
        faults=[f"{t.at:g}s {t.fault.describe()}" for t in schedule],
    )
    with environ(node_env):
        async with AsyncExitStack() as stack:
            server = await stack.enter_async_context(EmbeddedServer())
            proxy = None
            if scenario.link:
                proxy = await stack.enter_async_context(LinkProxy(server.port))
            fabric = await stack.enter_async_context(
                Fabric(
                    server.url,
                    name=f"sims-{scenario.name}",
                    backoff_initial=0.02,
                    backoff_max=0.25,
                )
            )
            await fabric.ensure_stream(traffic.input)
            await fabric.require_stream(traffic.output)
            await scenario.tree.declare_streams(fabric)
            url = proxy.url if proxy is not None else server.url
            workflow = Workflow(scenario.tree, url, observer=fabric)
            async with workflow:
                await workflow.wait_running(scenario.settle_timeout)
                run.log.info("workflow_running", workflow=workflow.describe())
                async with (
                    Injector(fabric, server=server, proxy=proxy, pids=workflow) as injector,
                    OrderedPublisher(fabric, name=f"sims-{scenario.name}-inputs") as publisher,
                ):
                    await _drive(run, schedule, fabric, injector, publisher)
                    await _settle(run, fabric, workflow, injector, publisher)
                lifted = {r.serial: injector.lifted_at(r) for _, r in run.applied}
            events = Counter(e.kind for e in workflow.events)
            if workflow.gave_up:
                run.problems.append(f"a supervisor gave up: {workflow.gave_up}")
            if workflow.orphans:
                run.problems.append(f"processes outlived the tree: {workflow.orphans}")
            outputs = await _read_all(fabric, traffic.output)
            inputs = await _read_all(fabric, traffic.input)
    result, extra = _check(run, outputs, inputs, lifted)
    report.add_example(result)
    report.extra.update(extra)
    report.extra["orphans"] = workflow.orphans
    report.extra["supervision_events"] = dict(events)
    report.extra["unplanned"] = unplanned(run.applied, workflow.events)
    report.extra["recovery_by_kind"] = recovery_by_kind(report)
    report.extra["progress"] = run.samples
    run.log.info(
        "scenario_checked",
        ok=report.ok,
        sent=report.messages_sent,
        checked=report.outputs_checked,
        lost=report.lost,
        duplicated=report.duplicated,
        wrong=report.wrong,
    )
    return report


#: Faults that make their target restart once; a freeze may (a heartbeat timeout), or not.
_RESTARTS: Final = frozenset({FaultKind.CRASH, FaultKind.HANG, FaultKind.KILL_PROCESS})


def unplanned(
    applied: Sequence[tuple[TimedFault, Injected]], events: Sequence[Event]
) -> dict[str, Any]:
    """Restarts beyond what the crash, hang, kill_process and freeze faults aimed at each
    child explain, and actor crashes that were not injected (``crashes``: their reasons).

    >>> from diaspora.events import Crashed, Restarted
    >>> restart = Restarted(name="root", child="sum", incarnation=2, attempt=1, cause="sum")
    >>> unplanned([], [restart, Crashed(name="root.sum", reason="KeyError('x')")])
    {'restarts': {'root.sum': 1}, 'crashes': ["root.sum: KeyError('x')"]}
    """
    planned: Counter[str] = Counter()
    for _, record in applied:
        if record.kind in _RESTARTS or record.kind is FaultKind.FREEZE:
            planned[record.target] += 1
    restarts = Counter(f"{e.name}.{e.child}" for e in events if isinstance(e, Restarted))
    extra = {child: n - planned[child] for child, n in restarts.items() if n > planned[child]}
    crashes = [f"{e.name}: {e.reason}" for e in events if isinstance(e, Crashed) and not e.injected]
    return {"restarts": extra, "crashes": crashes}


# -- while the traffic runs ------------------------------------------------------------------


async def _drive(
    run: _Run,
    schedule: Sequence[TimedFault],
    fabric: Fabric,
    injector: Injector,
    publisher: OrderedPublisher,
) -> None:
    """Traffic and faults, concurrently, with a progress line every second."""
    start = anyio.current_time()
    run.started_at = time.time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow_progress, run, fabric, injector, publisher, start)
        async with anyio.create_task_group() as work:
            work.start_soon(_traffic, run, publisher, start)
            work.start_soon(_faults, run, schedule, injector, start)
        tg.cancel_scope.cancel()
    run.log.info("traffic_done", sent=len(run.sent), faults=len(run.applied))


async def _traffic(run: _Run, publisher: OrderedPublisher, start: float) -> None:
    traffic = run.scenario.traffic
    rng = random.Random(f"{run.seed}:values")
    keys = list(run.inputs)
    low, high = traffic.value_range
    for n in range(traffic.messages):
        await anyio.sleep_until(start + n / traffic.rate)
        key = keys[n % len(keys)]
        values = run.inputs[key]
        index = len(values)
        value = rng.randint(low, high) if traffic.values is Values.RANDOM else index
        values.append(value)
        run.sent.append((time.time(), (key, index)))
        await publish_input(
            publisher, traffic.input, key, index, {"key": key, "i": index, "value": value}
        )
    run.traffic_done = True


async def _faults(
    run: _Run, schedule: Sequence[TimedFault], injector: Injector, start: float
) -> None:
    for timed in schedule:
        await anyio.sleep_until(start + timed.at)
        if timed.fault.kind in _SERVER_TAKERS:
            await _server_free(run, injector)
        try:
            record = await injector.apply(timed.fault)
        except InjectionError as exc:
            late = anyio.current_time() - start
            run.not_injected.append({**timed.as_dict(), "error": str(exc)})
            run.problems.append(f"{timed.origin} ({timed.fault.describe()}) not injected: {exc}")
            run.log.warning(
                "fault_not_injected", origin=timed.origin, at_s=round(late, 2), error=str(exc)
            )
            continue
        run.applied.append((timed, record))


#: Server faults that need the server up: one still down from an earlier fault refuses them.
_SERVER_TAKERS: Final = frozenset(
    {FaultKind.KILL_SERVER, FaultKind.PAUSE_SERVER, FaultKind.RESTART_SERVER}
)


async def _server_free(run: _Run, injector: Injector) -> None:
    """Wait while an earlier server fault that lifts itself is still in force, and a gap after.

    The schedule keeps server faults apart, but a fault applied late (an actor order that
    waited for a restart) or a server slow to come back (a loaded machine) would make the
    next one meet a server that is still down and be refused. An open-ended fault of the
    file (no duration) is not waited for: the next server fault is what ends it.
    """
    deadline = anyio.current_time() + run.scenario.settle_timeout
    waited = False
    while anyio.current_time() < deadline:
        lasting = [
            r for r in injector.active() if r.kind.layer == "server" and r.fault.duration is None
        ]
        if lasting or (injector.server_up and not _server_active(injector)):
            break
        waited = True
        await anyio.sleep(_POLL)
    if waited:
        await anyio.sleep(_SERVER_GAP)


def _server_active(injector: Injector) -> bool:
    return any(r.kind.layer == "server" for r in injector.active())


# -- after the traffic -----------------------------------------------------------------------


async def _settle(
    run: _Run,
    fabric: Fabric,
    workflow: Workflow,
    injector: Injector,
    publisher: OrderedPublisher,
) -> None:
    """Heal, then wait for the tree, the inputs' acknowledgements and every expected output."""
    timeout = run.scenario.settle_timeout
    await injector.heal()
    try:
        await workflow.wait_running(timeout)
    except WorkflowError as exc:
        run.problems.append(str(exc))
    with anyio.move_on_after(timeout) as scope:
        await publisher.flush()
    if scope.cancelled_caught:
        run.problems.append(
            f"inputs not all acknowledged within {timeout:g}s "
            f"({publisher.acked} of {publisher.enqueued})"
        )
    want = {(key, i) for key, values in run.inputs.items() for i in range(len(values))}
    seen: set[_Input] = set()
    cursor = 1
    deadline = anyio.current_time() + timeout
    while True:
        try:
            async for stored in read_stored(fabric, run.scenario.traffic.output, start_seq=cursor):
                cursor = stored.seq + 1
                identified = _identify(stored)
                if identified is not None:
                    seen.add(identified[0])
        except Exception as exc:  # server or link trouble: read again
            run.log.info("read_retry", error=repr(exc))
        if want <= seen:
            run.log.info("caught_up", outputs=cursor - 1)
            return
        if anyio.current_time() > deadline:
            run.log.warning("outputs_incomplete", missing=len(want - seen))
            run.problems.append(
                f"outputs incomplete after {timeout:g}s: {len(want - seen)} inputs unanswered"
            )
            return
        await anyio.sleep(_POLL)


def _identify(stored: StoredMsg) -> tuple[_Input, Any] | None:
    """``((key, i), data)`` of an output or input, ``None`` if it names no input."""
    try:
        data = codec.decode(stored.payload)
        key, index = data["key"], data["i"]
    except (DecodeError, KeyError, TypeError, ValueError):
        return None
    if not isinstance(key, str) or isinstance(index, bool) or not isinstance(index, int):
        return None
    return (key, index), data


async def _read_all(fabric: Fabric, subject: str) -> list[StoredMsg]:
    """Every message of ``subject``'s stream (read again if the read fails midway)."""
    last: Exception | None = None
    for _ in range(5):
        try:
            return [stored async for stored in read_stored(fabric, subject)]
        except Exception as exc:
            last = exc
            await anyio.sleep(0.5)
    raise RuntimeError(f"cannot read the stream of {subject!r}: {last!r}")


# -- the check -------------------------------------------------------------------------------


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))], 3)


def _check(
    run: _Run,
    outputs: Sequence[StoredMsg],
    inputs: Sequence[StoredMsg],
    lifted: Mapping[int, float | None],
) -> tuple[ExampleResult, dict[str, Any]]:
    scenario = run.scenario
    traffic = scenario.traffic
    expected = {key: list(traffic.model(key, list(values))) for key, values in run.inputs.items()}
    got: dict[str, list[tuple[int, Any]]] = {key: [] for key in expected}
    arrival: dict[_Input, float] = {}
    foreign: list[Any] = []
    for stored in outputs:
        identified = _identify(stored)
        if identified is None or identified[0][0] not in got:
            foreign.append(stored.payload if identified is None else identified[1])
            continue
        (key, index), data = identified
        got[key].append((index, data))
        arrival.setdefault((key, index), stored.timestamp)
    check = check_outputs(expected, got)
    problems = [*run.problems, *check.problems]
    if foreign:
        problems.append(f"{len(foreign)} outputs answer no input sent, e.g. {foreign[0]!r}")
    stored_at: dict[_Input, float] = {}
    for stored in inputs:
        identified = _identify(stored)
        if identified is not None:
            stored_at.setdefault(identified[0], stored.timestamp)
    latencies = [arrival[k] - stored_at[k] for k in arrival if k in stored_at]
    sent = sorted(run.sent)
    fault_log = []
    recoveries = []
    for timed, record in run.applied:
        end = lifted.get(record.serial)
        seconds = None
        if end is not None and record.kind is not FaultKind.HEAL_LINK:
            seconds = recovery_time(end, sent, arrival)
        if seconds is not None:
            recoveries.append((record.kind.value, seconds))
        fault_log.append(
            {
                **record.as_dict(),
                "origin": timed.origin,
                "planned_at_s": timed.at,
                "at_s": round(record.at - run.started_at, 3),
                "lifted_at_s": None if end is None else round(end - run.started_at, 3),
                "recovery_s": seconds,
            }
        )
    last_sent = sent[-1][0] if sent else run.started_at
    catch_up = max(arrival.values(), default=last_sent) - last_sent
    result = ExampleResult(
        messages=len(run.sent),
        outputs=check.outputs + len(foreign),
        lost=check.lost,
        duplicated=check.duplicated,
        reordered=check.reordered,
        wrong=check.wrong + len(foreign),
        faults=dict(Counter(record.kind.value for _, record in run.applied)),
        recoveries=recoveries,
        catch_up_s=round(max(0.0, catch_up), 3),
        duration_s=round(time.time() - run.started_at, 3),
        problems=problems,
    )
    extra: dict[str, Any] = {
        "scenario": scenario.source,
        "description": scenario.description,
        "seed": run.seed,
        "tree": str(scenario.tree_path),
        "link": scenario.link,
        "traffic": {
            "input": traffic.input,
            "output": traffic.output,
            "model": traffic.model_path,
            "keys": traffic.keys,
            "rate": traffic.rate,
            "messages": traffic.messages,
            "values": traffic.values.value,
        },
        "fault_log": fault_log,
        "not_injected": run.not_injected,
        "latency_s": (
            {
                "measured": len(latencies),
                "p50": _percentile(latencies, 0.5),
                "p99": _percentile(latencies, 0.99),
                "max": round(max(latencies), 3),
            }
            if latencies
            else {"measured": 0}
        ),
    }
    return result, extra
