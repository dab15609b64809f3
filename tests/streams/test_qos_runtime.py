"""QoS-aware streams in running actors: replay from history, reconstruction, policies, outages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from diaspora import ActorRuntime, codec
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.streams import OverloadPolicy, Policy, QosSpec, declare_qos
from diaspora.streams._flow import FlowGate
from diaspora.streams._stages import FlowGateStage, QosAdmission
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from tests.streams.qos_actors import Collector, ForgetfulSensor, Sensor, Throttle

pytestmark = pytest.mark.anyio


class Events:
    """Every event of the actors under test, as decoded maps."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def kinds(self, actor: str) -> list[str]:
        return [e["kind"] for e in self.seen if e["name"] == actor]

    def of(self, actor: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e["name"] == actor and e["kind"] == kind]


@asynccontextmanager
async def watching(fabric: Fabric) -> AsyncIterator[Events]:
    events = Events()

    async def collect(msg: Any) -> None:
        events.seen.append(codec.decode(msg.data))

    async with fabric.subscription("diaspora.events.actor.>", collect, flush=True):
        yield events


@asynccontextmanager
async def running(runtime: ActorRuntime) -> AsyncIterator[ActorRuntime]:
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        yield runtime
        runtime.request_stop()


async def collected(fabric: Fabric) -> list[dict[str, Any]]:
    return [m.data for m in await read_stream(fabric, "collected")]


async def count(fabric: Fabric, subject: str) -> int:
    try:
        return len(await read_stream(fabric, subject, decode=False))
    except Exception:
        return 0


async def stored_up_to(fabric: Fabric, subject: str, seq: int) -> bool:
    _, last = await fabric.stream_bounds(subject)
    return last >= seq


async def run_past_retention(
    fabric: Fabric, tmp_path: Path, *, restart_producer: bool, sensor: type[Sensor] = Sensor
) -> None:
    """20 items consumed; the collector stops; 280 more while the stream keeps only 50."""
    await fabric.ensure_stream("temps", max_msgs=50)
    throttle = Throttle(release=20)
    sensor_args = {"throttle": throttle}
    sensor_rt = ActorRuntime(sensor, fabric, id="sensor", args=sensor_args, state_dir=tmp_path)
    async with anyio.create_task_group() as tg:
        await tg.start(sensor_rt.run)
        first = ActorRuntime(Collector, fabric, id="collector")
        async with running(first):
            await wait_until(lambda: first.positions.get("temps", 0) >= 20)
        throttle.set(release=300)
        await wait_until(lambda: sensor_rt.stats.emitted >= 300)
        await wait_until(lambda: stored_up_to(fabric, "temps", 300))  # emits are pipelined
        if restart_producer:
            sensor_rt.request_stop()
            await wait_until(lambda: not sensor_rt.running)  # stopped, history closed
            sensor_rt = ActorRuntime(
                sensor, fabric, id="sensor", args=sensor_args, state_dir=tmp_path
            )
            await tg.start(sensor_rt.run)
        assert await fabric.stream_bounds("temps") == (251, 300)
        second = ActorRuntime(Collector, fabric, id="collector")
        async with running(second):
            await wait_until(lambda: second.positions.get("temps", 0) >= 300, timeout=30)
        assert second.stats.lost == 0 or sensor is ForgetfulSensor
        sensor_rt.request_stop()


@pytest.mark.parametrize("restart_producer", [False, True])
async def test_items_past_retention_are_replayed_from_the_producers_history(
    fabric: Fabric, tmp_path: Path, restart_producer: bool
) -> None:
    async with watching(fabric) as events:
        await run_past_retention(fabric, tmp_path, restart_producer=restart_producer)
    out = await collected(fabric)
    assert [x["item"] for x in out] == list(range(1, 301))  # in order, none lost or doubled
    assert [x["t"] for x in out] == [float(i) for i in range(1, 301)]
    assert [x["replayed"] for x in out] == [False] * 20 + [True] * 230 + [False] * 50
    assert not any(x["reconstructed"] for x in out)
    gaps = events.of("collector", "gap")
    assert [(g["producer"], g["first"], g["last"]) for g in gaps] == [("sensor", 21, 250)]
    assert events.of("collector", "lost") == []


async def test_items_nobody_has_are_reconstructed_and_marked(
    fabric: Fabric, tmp_path: Path
) -> None:
    await declare_qos(fabric, "temps", QosSpec(reconstructor="linear"))
    async with watching(fabric) as events:
        await run_past_retention(fabric, tmp_path, restart_producer=False, sensor=ForgetfulSensor)
    out = await collected(fabric)
    assert [x["item"] for x in out] == list(range(1, 301))
    assert [x["t"] for x in out] == [float(i) for i in range(1, 301)]  # linear: exact here
    assert [x["reconstructed"] for x in out] == [False] * 20 + [True] * 230 + [False] * 50
    lost = events.of("collector", "lost")
    assert [(e["producer"], e["first"], e["last"], e["count"]) for e in lost] == [
        ("sensor", 21, 250, 230)
    ]
    stored = await read_stream(fabric, "collected")
    assert stored[30].headers["Diaspora-Reconstructed"] == "1"
    assert "Diaspora-Reconstructed" not in stored[10].headers


async def test_a_paused_server_delays_the_stream_but_loses_nothing(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    async with Fabric(nats_server.url, backoff_initial=0.02, backoff_max=0.2) as fabric:
        await fabric.ensure_stream("temps")
        throttle = Throttle(release=600, rate=200)
        sensor = ActorRuntime(
            Sensor, fabric, id="sensor", args={"throttle": throttle}, state_dir=tmp_path
        )
        collector = ActorRuntime(Collector, fabric, id="collector")
        async with running(sensor), running(collector):
            await wait_until(lambda: collector.positions.get("temps", 0) >= 150)
            nats_server.pause()  # a link outage: the server answers nothing
            await anyio.sleep(3)
            nats_server.resume()
            await wait_until(lambda: collector.positions.get("temps", 0) >= 600, timeout=60)
        await fabric.wait_connected(timeout=10)
        out = await collected(fabric)
    assert [x["item"] for x in out] == list(range(1, 601))


async def drive_slowdown(
    fabric: Fabric, tmp_path: Path, policy: OverloadPolicy, *, events: Events
) -> tuple[ActorRuntime, ActorRuntime]:
    """Production at 200/s; the collector slowed to 50/s until its policy kicks in and a bit."""
    rate = 200.0
    await fabric.ensure_stream("temps")
    await declare_qos(fabric, "temps", QosSpec(rate=rate, max_lag_items=100, policy=policy))
    throttle = Throttle(release=10**9, rate=rate)
    sensor = ActorRuntime(
        Sensor, fabric, id="sensor", args={"throttle": throttle}, state_dir=tmp_path
    )
    collector = ActorRuntime(Collector, fabric, id="collector", args={"throttle": throttle})
    async with running(sensor), running(collector):
        await wait_until(lambda: collector.positions.get("temps", 0) >= 100)
        throttle.set(handle_delay=4 / rate)  # a quarter of the production rate
        if policy.kind is Policy.BLOCK:  # the producer waits: the consumer never lags far
            await wait_until(lambda: _gate(sensor).blocked_s > 1.0, timeout=30)
        else:
            await wait_until(lambda: events.of("collector", "policy_on"), timeout=30)
        slowed_at = collector.positions["temps"]
        await wait_until(lambda: collector.positions["temps"] >= slowed_at + 400, timeout=60)
        throttle.set(handle_delay=0.0)  # the slowdown ends
        if policy.kind is not Policy.BLOCK:
            await wait_until(lambda: events.of("collector", "policy_off"), timeout=30)
        recovered_at = sensor.stats.emitted
        throttle.set(release=recovered_at + 200)
        await wait_until(lambda: collector.positions["temps"] >= recovered_at + 200, timeout=30)
    return sensor, collector


def degraded_window(events: Events) -> tuple[float, float]:
    on = events.of("collector", "policy_on")[0]["time"]
    off = events.of("collector", "policy_off")[0]["time"]
    return on, off


async def test_decimate_handles_one_item_in_k_while_overloaded(
    fabric: Fabric, tmp_path: Path
) -> None:
    async with watching(fabric) as events:
        _, collector = await drive_slowdown(
            fabric, tmp_path, OverloadPolicy.decimate(4), events=events
        )
    out = await collected(fabric)
    items = [x["item"] for x in out]
    on = events.of("collector", "policy_on")[0]
    assert on["policy"] == "decimate"
    assert collector.stats.skipped > 0
    # while degraded only multiples of 4 (by stream sequence) were handled
    skipped = sorted(set(range(1, items[-1] + 1)) - set(items))
    assert skipped
    gaps_handled = [x["seq"] for x in out if skipped[0] < x["item"] < skipped[-1]]
    assert all(seq % 4 == 0 for seq in gaps_handled)
    # after the slowdown: every item again, and the stream back to normal mode
    assert items[-200:] == list(range(items[-200], items[-200] + 200))
    (qos,) = [s for s in collector.stages if isinstance(s, QosAdmission)]
    assert qos.flows["temps"].mode.value == "normal"


async def test_aggregate_combines_n_items_while_overloaded(fabric: Fabric, tmp_path: Path) -> None:
    async with watching(fabric) as events:
        await drive_slowdown(fabric, tmp_path, OverloadPolicy.aggregate(4), events=events)
    out = await collected(fabric)
    aggregated = [x for x in out if x["aggregated"] > 1]
    assert aggregated
    assert all(x["aggregated"] == 4 for x in aggregated[:-1])
    # the mean of items k-3..k is k - 1.5
    assert all(x["t"] == x["item"] - (x["aggregated"] - 1) / 2 for x in aggregated)
    # every item is accounted for, handled alone or in an aggregate
    assert sum(x["aggregated"] for x in out) == out[-1]["item"]
    assert [x["aggregated"] for x in out[-200:]] == [1] * 200


async def test_drop_oldest_skips_to_the_newest_items_while_overloaded(
    fabric: Fabric, tmp_path: Path
) -> None:
    async with watching(fabric) as events:
        _, collector = await drive_slowdown(
            fabric, tmp_path, OverloadPolicy.drop_oldest(), events=events
        )
    out = await collected(fabric)
    items = [x["item"] for x in out]
    assert collector.stats.skipped > 0
    assert items == sorted(items)
    assert len(items) < items[-1]
    assert items[-200:] == list(range(items[-200], items[-200] + 200))
    assert collector.stats.max_lag <= 2 * 100  # held at the bound, give or take a batch


async def test_block_slows_the_producer_and_loses_nothing(fabric: Fabric, tmp_path: Path) -> None:
    async with watching(fabric) as events:
        sensor, collector = await drive_slowdown(
            fabric, tmp_path, OverloadPolicy.block(), events=events
        )
    out = await collected(fabric)
    assert [x["item"] for x in out] == list(range(1, len(out) + 1))  # nothing lost
    assert sensor.stats.emitted == out[-1]["item"]
    assert collector.stats.skipped == 0
    gate = _gate(sensor)
    assert gate.blocked_s > 1.0  # the producer waited for its consumer
    assert collector.stats.max_lag <= 2 * 100  # the bound, give or take a batch in flight


async def test_a_stall_is_reported_and_filled_with_reconstructed_items(
    fabric: Fabric, tmp_path: Path
) -> None:
    await fabric.ensure_stream("temps")
    spec = QosSpec(rate=20, stall_deadline=0.5, reconstructor="hold_last", fill_stalls=True)
    await declare_qos(fabric, "temps", spec)
    throttle = Throttle(release=20, rate=20)
    sensor = ActorRuntime(
        Sensor, fabric, id="sensor", args={"throttle": throttle}, state_dir=tmp_path
    )
    collector = ActorRuntime(Collector, fabric, id="collector")
    async with watching(fabric) as events, running(sensor), running(collector):
        await wait_until(lambda: collector.positions.get("temps", 0) >= 20)
        await wait_until(lambda: events.of("collector", "stall"), timeout=10)
        await wait_until(lambda: collector.stats.reconstructed >= 5, timeout=10)
        throttle.set(release=40)  # the stream flows again
        await wait_until(lambda: collector.positions.get("temps", 0) >= 40, timeout=10)
        await wait_until(lambda: events.of("collector", "stall_end"), timeout=10)
    out = await collected(fabric)
    real = [x for x in out if not x["reconstructed"]]
    filled = [x for x in out if x["reconstructed"]]
    assert [x["item"] for x in real] == list(range(1, 41))
    assert len(filled) >= 5
    assert all(x["t"] == 20.0 for x in filled)  # hold_last: the last value before the stall
    first_filled = out.index(filled[0])
    assert [x["item"] for x in out[:first_filled]] == list(range(1, 21))


async def test_scale_out_adds_replicas_while_slow_and_keeps_per_key_exactly_once(
    fabric: Fabric, tmp_path: Path
) -> None:
    from diaspora.compute._scaleout import ScaleOutGroup
    from tests.streams.qos_actors import KeyedCounter, KeyedSensor

    rate = 200.0
    await fabric.ensure_stream("temps")
    policy = OverloadPolicy.scale_out(max_replicas=4)
    await declare_qos(fabric, "temps", QosSpec(rate=rate, max_lag_items=100, policy=policy))
    throttle = Throttle(release=10**9, rate=rate)
    sensor = ActorRuntime(
        KeyedSensor, fabric, id="sensor", args={"throttle": throttle}, state_dir=tmp_path
    )
    group = ScaleOutGroup(
        KeyedCounter, fabric, id="counter", partitions=4, args={"throttle": throttle}
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sensor.run)
        await tg.start(group.run)
        throttle.set(handle_delay=4 / rate)  # one replica handles a quarter of the rate
        await wait_until(lambda: group.replicas == 4, timeout=60)
        throttle.set(handle_delay=0.0)  # the slowdown ends
        await wait_until(lambda: group.replicas == 1, timeout=60)
        last = sensor.stats.emitted
        throttle.set(release=last)
        await wait_until(lambda: _all_counted(fabric, last), timeout=30)
        group.request_stop()
        sensor.request_stop()
    stored = await read_stream(fabric, "counted")
    out = [m.data for m in stored]
    items = sorted(x["item"] for x in out)

    assert items == list(range(1, last + 1))  # every item once: none lost, none doubled
    for key in {x["key"] for x in out}:
        assert [x["n"] for x in out if x["key"] == key] == list(
            range(1, sum(1 for x in out if x["key"] == key) + 1)
        )  # per key: counted in order, across every rebalance
    replicas = [r for _, r, _ in group.history]
    assert max(replicas) == 4
    assert replicas[-1] == 1


async def _all_counted(fabric: Fabric, last: int) -> bool:
    """Every item counted: the partitions' positions are their own items', not the head."""
    return (await fabric.stream_bounds("counted"))[1] >= last


def _gate(runtime: ActorRuntime) -> FlowGate:
    (stage,) = [s for s in runtime.stages if isinstance(s, FlowGateStage)]
    gate = stage.gate_of("temps")
    assert gate is not None
    return gate
