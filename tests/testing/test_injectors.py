"""Injectors: every fault kind against real actors, processes, a real server and a link,
each returning a record; durations lifted by the injector; refusals that say why."""

from __future__ import annotations

import json
import time
from collections.abc import Collection

import nats
import pytest

from diaspora.events import Event, Exited, Restarted
from diaspora.fabric import EmbeddedServer, Fabric, ServerState
from diaspora.testing import (
    FaultKind,
    FaultSpec,
    FaultStep,
    InjectionError,
    Injector,
    LinkProxy,
    wait_until,
)
from diaspora.testing._pids import is_running
from diaspora.testing._streams import read_stream
from diaspora.testing.plugin import WorkflowRunner
from diaspora.workflow import parse_config
from tests.testing.trees import ECHO_IN_PROCESS, ECHO_NODE

pytestmark = pytest.mark.anyio


async def outputs(fabric: Fabric) -> list[object]:
    try:
        return [m.data for m in await read_stream(fabric, "echo.out")]
    except Exception:
        return []


def restarts(events: list[Event]) -> int:
    return sum(1 for e in events if isinstance(e, Restarted))


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (dict(kind=FaultKind.KILL_PROCESS), "needs a target"),
        (dict(kind=FaultKind.KILL_SERVER, target="root.x"), "takes no target"),
        (dict(kind=FaultKind.FREEZE, target="root.x"), "needs seconds"),
        (dict(kind=FaultKind.BANDWIDTH), "needs rate"),
        (dict(kind=FaultKind.BLACKHOLE), "needs a duration"),
        (dict(kind=FaultKind.CRASH, target="a", duration=1.0), "instantaneous"),
        (dict(kind=FaultKind.LATENCY, seconds=-1.0), "seconds=-1.0 must be >= 0"),
        (dict(kind=FaultKind.BANDWIDTH, rate=0), "rate=0 must be > 0"),
    ],
)
def test_fault_specs_are_checked_with_errors_naming_the_fault(
    spec: dict[str, object], error: str
) -> None:
    with pytest.raises(InjectionError, match=error):
        FaultSpec(**spec)  # type: ignore[arg-type]


def test_specs_describe_themselves_and_serialize_to_json() -> None:
    spec = FaultSpec(FaultKind.LATENCY, seconds=0.05, jitter=0.01, duration=2.0)
    assert spec.describe() == "latency 50ms ±10ms for 2s"
    assert json.loads(json.dumps(spec.as_dict())) == {
        "kind": "latency",
        "seconds": 0.05,
        "jitter": 0.01,
        "duration": 2.0,
    }
    assert FaultSpec("kill_process", "root.sum").kind is FaultKind.KILL_PROCESS  # type: ignore[arg-type]


async def test_crash_and_hang_reach_an_actor_in_a_process_node(
    fabric: Fabric, workflow: WorkflowRunner, injector: Injector
) -> None:
    await fabric.ensure_stream("echo.in")
    async with workflow(parse_config(ECHO_NODE)) as wf:
        crash = await injector.crash("root.echo")
        await fabric.publish("echo.in", {"n": 1})  # the crash happens at this message
        await wait_until(lambda: restarts(wf.events) == 1, timeout=20, what="restarted")
        hang = await injector.hang("root.echo")  # past Echo's 1 s deadline: a crash
        await fabric.publish("echo.in", {"n": 2})
        await wait_until(lambda: restarts(wf.events) == 2, timeout=20, what="restarted")

        async def both_out() -> bool:
            return len(await outputs(fabric)) >= 2

        await wait_until(both_out, timeout=20)
        assert await outputs(fabric) == [{"n": 1}, {"n": 2}]  # each once, after a replay
    assert (crash.kind, crash.target, hang.kind) == (FaultKind.CRASH, "root.echo", FaultKind.HANG)
    assert crash.at < hang.at <= time.time()
    assert injector.counts() == {"crash": 1, "hang": 1}


async def test_kill_process_kills_the_node_the_tree_names_and_it_comes_back(
    fabric: Fabric, workflow: WorkflowRunner, injector: Injector
) -> None:
    async with workflow(parse_config(ECHO_NODE)) as wf:
        injector.pids = wf
        first = await wf.wait_pid("root.echo")
        killed = await injector.kill_process("root.echo")
        assert killed.pid == first
        second = await wf.wait_pid("root.echo", timeout=20, exclude={first})
        assert second != first
        assert not is_running(first)
        again = await injector.kill_process("root.echo")  # the new one, not the dead pid
        assert again.pid == second
        await wf.wait_running(timeout=20)
    assert wf.orphans == []


async def test_freeze_longer_than_the_heartbeat_gets_the_node_killed_by_its_watchdog(
    fabric: Fabric, workflow: WorkflowRunner, injector: Injector
) -> None:
    await fabric.ensure_stream("echo.in")
    async with workflow(parse_config(ECHO_NODE)) as wf:
        injector.pids = wf
        frozen = await injector.freeze("root.echo", 3.0)  # heartbeat_timeout is 1 s
        await fabric.publish("echo.in", {"n": 1})
        await wait_until(lambda: restarts(wf.events) == 1, timeout=20, what="restarted")
        assert any(isinstance(e, Exited) and "NodeHung" in e.reason for e in wf.events)
        assert frozen.pid is not None
        assert not is_running(frozen.pid)


class Pids:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    async def wait_pid(
        self, target: str, *, timeout: float = 30.0, exclude: Collection[int] = ()
    ) -> int:
        return self.pid


async def test_injector_refuses_to_kill_this_process_or_one_it_did_not_start(
    fabric: Fabric, workflow: WorkflowRunner
) -> None:
    async with workflow(parse_config(ECHO_IN_PROCESS)) as wf, Injector(fabric, pids=wf) as inj:
        with pytest.raises(InjectionError, match=r"runs in pid \d+, which this test must not kill"):
            await inj.kill_process("root.echo")
        with pytest.raises(InjectionError, match="must not freeze"):
            await inj.freeze("root.echo", 1.0)
    async with Injector(fabric, pids=Pids(1)) as injector:
        with pytest.raises(InjectionError, match=r"pid 1 of 'root\.x' is not a process this test"):
            await injector.kill_process("root.x")
    assert injector.records == []


async def test_order_nobody_takes_fails_with_a_hint_after_the_timeout(fabric: Fabric) -> None:
    async with Injector(fabric, order_timeout=0.3) as injector:
        with pytest.raises(InjectionError, match="does it run the FaultInjection stage"):
            await injector.crash("root.nobody")


async def test_server_faults_with_a_duration_are_lifted_by_the_injector(
    nats_server: EmbeddedServer,
) -> None:
    async with Fabric(nats_server.url, backoff_initial=0.01, backoff_max=0.05) as fabric:
        async with Injector(fabric, server=nats_server) as injector:
            killed = await injector.kill_server(duration=0.3)
            assert nats_server.state is ServerState.KILLED
            assert not injector.server_up
            assert injector.active() == [killed]
            assert injector.lifted_at(killed) is None
            await wait_until(lambda: injector.server_up, timeout=10, what="server back")
            lifted = injector.lifted_at(killed)
            assert lifted is not None
            assert lifted - killed.at >= 0.3
            await fabric.wait_connected(timeout=10)
            paused = await injector.pause_server(duration=0.2)
            assert nats_server.state is ServerState.PAUSED
            await wait_until(lambda: injector.lifted_at(paused) is not None, timeout=10)
            assert nats_server.state is ServerState.RUNNING
            await injector.kill_server()  # no duration: until restarted or healed
            await injector.restart_server()
            assert nats_server.state is ServerState.RUNNING
            await injector.kill_server()
            with pytest.raises(InjectionError, match="the server is killed"):
                await injector.pause_server()
            await injector.heal()
            assert nats_server.state is ServerState.RUNNING
        assert injector.counts() == {"kill_server": 3, "pause_server": 1, "restart_server": 1}


async def test_link_faults_degrade_cut_and_heal_the_proxied_connection(
    nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> None:
    nc = await nats.connect(link_proxy.url, reconnect_time_wait=0.05, max_reconnect_attempts=-1)
    try:
        async with Injector(proxy=link_proxy) as injector:
            await injector.latency(0.1, duration=5.0)
            started = time.monotonic()
            await nc.flush()
            assert time.monotonic() - started >= 0.2  # a round trip: twice the latency
            cut = await injector.cut_link(duration=0.3)
            assert not injector.link_open
            assert injector.lifted_at(cut) is None
            await wait_until(lambda: injector.link_open, timeout=5, what="cut lifted")
            await wait_until(lambda: nc.is_connected, timeout=10, what="client back")
            started = time.monotonic()
            await nc.flush()
            assert time.monotonic() - started >= 0.2  # the latency outlived the cut
            await injector.heal_link()
            await injector.bandwidth(50_000, duration=1.0)
            await injector.reset_link()
            hole = await injector.blackhole(0.2)
            await wait_until(lambda: injector.lifted_at(hole) is not None, timeout=5)
            await wait_until(lambda: nc.is_connected, timeout=10)
            await nc.flush(timeout=5)
        kinds = [r.kind.value for r in injector.records]
        assert kinds == [
            "latency",
            "cut_link",
            "heal_link",
            "bandwidth",
            "reset_link",
            "blackhole",
        ]
    finally:
        await nc.close()


async def test_a_schedule_is_carried_out_in_order_after_its_delays(
    link_proxy: LinkProxy,
) -> None:
    schedule = [
        FaultStep(0.1, FaultSpec(FaultKind.LATENCY, seconds=0.01, duration=0.1)),
        FaultStep(0.0, FaultSpec(FaultKind.RESET_LINK)),
        FaultStep(0.2, FaultSpec(FaultKind.HEAL_LINK)),
    ]
    async with Injector(proxy=link_proxy) as injector:
        started = time.time()
        records = await injector.run(schedule)
    assert [r.kind for r in records] == [
        FaultKind.LATENCY,
        FaultKind.RESET_LINK,
        FaultKind.HEAL_LINK,
    ]
    assert records[0].at - started >= 0.1
    assert records[2].at - records[1].at >= 0.2
    assert [r.serial for r in records] == [0, 1, 2]
    assert records[0].as_dict()["target"] == "link"
