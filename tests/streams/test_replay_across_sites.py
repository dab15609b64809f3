"""Replay from a producer's history across sites: an edge producer, a bridge edge → hpc, an hpc
consumer. A hole the bridge copied (the edge stream too small for a cut) is filled at hpc from
the edge producer's history, over the leaf link."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from diaspora import ActorRuntime, codec
from diaspora.errors import ReplayUnavailable
from diaspora.events import Lost, MemorySink, Replayed
from diaspora.fabric import Bridge, Fabric, ensure_bridge, read_stored
from diaspora.streams import HistorySpec, QosSpec, collect_history, declare_qos
from diaspora.testing import wait_until
from tests.fabric.leafrig import LeafRig, leaf_rig, wait_domain
from tests.streams.qos_actors import Collector, Sensor, Throttle

pytestmark = pytest.mark.anyio

UP = Bridge("temps", from_domain="edge", to_domain="hpc")


@pytest.fixture
async def rig() -> AsyncIterator[LeafRig]:
    async with leaf_rig() as rig:
        yield rig


async def collected(hub: Fabric) -> list[dict[str, object]]:
    try:
        return [codec.decode(m.payload) async for m in read_stored(hub, "collected")]
    except Exception:
        return []


class ShortHistorySensor(Sensor):
    history = HistorySpec(max_items=100)


@pytest.mark.parametrize(
    ("sensor_class", "filled", "lost"),
    [
        pytest.param(Sensor, [(11, 160)], [], id="all-in-history"),
        pytest.param(ShortHistorySensor, [(111, 160)], [(11, 110)], id="history-too-short"),
    ],
)
async def test_a_hole_the_bridge_copied_is_replayed_from_the_edge_producers_history(
    rig: LeafRig,
    tmp_path: Path,
    sensor_class: type[Sensor],
    filled: list[tuple[int, int]],
    lost: list[tuple[int, int]],
) -> None:
    sink = MemorySink()
    throttle = Throttle()
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject, max_msgs=50)  # too small for the cut below
        await ensure_bridge(hub, UP)
        sensor = ActorRuntime(
            sensor_class, edge, id="sensor", args={"throttle": throttle}, state_dir=tmp_path
        )
        collector = ActorRuntime(Collector, hub, id="collector", events=sink)
        lost_count = sum(b - a + 1 for a, b in lost)
        async with anyio.create_task_group() as tg:
            await tg.start(sensor.run)
            await tg.start(collector.run)
            throttle.set(release=10)
            await wait_until(lambda: collector.positions.get(UP.subject, 0) >= 10, timeout=30)
            rig.proxy.cut()
            await wait_domain(rig.hub.url, "edge", up=False)
            throttle.set(release=210)  # 200 while cut off: the edge stream keeps the last 50
            await wait_until(lambda: sensor.stats.emitted >= 210, timeout=30)
            rig.proxy.heal()

            async def all_collected() -> bool:
                return len(await collected(hub)) >= 210 - lost_count

            await wait_until(all_collected, timeout=60, what="the items collected at hpc")
            collector.request_stop()
            sensor.request_stop()
        out = await collected(hub)
    gone = {n for a, b in lost for n in range(a, b + 1)}
    want = [n for n in range(1, 211) if n not in gone]
    assert [o["item"] for o in out] == want, "lost, duplicated or reordered"
    assert [o["item"] for o in out if o["replayed"]] == [n for n in range(11, 161) if n in want]
    # the events say which ranges were filled and which stayed lost
    assert [(e.first, e.last) for e in sink.events if isinstance(e, Replayed)] == filled
    assert [(e.first, e.last, e.pending) for e in sink.events if isinstance(e, Lost)] == [
        (a, b, False) for a, b in lost
    ]


async def _hole_copied_then_cut(
    rig: LeafRig, edge: Fabric, hub: Fabric, tmp_path: Path, sensor_tg: anyio.abc.TaskGroup
) -> ActorRuntime:
    """Items 1..10 handled at hpc; 11..210 emitted while cut (the edge keeps 161..210), copied
    to hpc once healed; then the link is cut again. Returns the running sensor."""
    throttle = Throttle(release=10)
    await edge.ensure_stream(UP.subject, max_msgs=50)
    await ensure_bridge(hub, UP)
    sensor = ActorRuntime(
        Sensor, edge, id="sensor", args={"throttle": throttle}, state_dir=tmp_path
    )
    await sensor_tg.start(sensor.run)
    collector = ActorRuntime(Collector, hub, id="collector")
    async with anyio.create_task_group() as tg:
        await tg.start(collector.run)
        await wait_until(lambda: collector.positions.get(UP.subject, 0) >= 10, timeout=30)
        collector.request_stop()
    rig.proxy.cut()
    await wait_domain(rig.hub.url, "edge", up=False)
    throttle.set(release=210)
    await wait_until(lambda: sensor.stats.emitted >= 210, timeout=30)
    rig.proxy.heal()

    async def copied() -> bool:
        return [m.seq async for m in read_stored(hub, UP.subject, headers_only=True)][-1:] == [60]

    await wait_until(copied, timeout=60, what="the copy at hpc with its hole")
    rig.proxy.cut()
    await wait_domain(rig.hub.url, "edge", up=False)
    return sensor


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted-while-cut"])
async def test_a_replay_while_the_link_is_down_fails_at_once_and_is_retried_when_it_returns(
    rig: LeafRig, tmp_path: Path, restart: bool
) -> None:
    sink = MemorySink()
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        async with anyio.create_task_group() as sensor_tg:
            sensor = await _hole_copied_then_cut(rig, edge, hub, tmp_path, sensor_tg)
            # cut off, the producer's history is unreachable at once (no responders), not
            # after a timeout
            with pytest.raises(ReplayUnavailable, match="nobody serves"):
                await collect_history(hub, "sensor", UP.subject, 11, 160, timeout=60)

            async def healed(collector: ActorRuntime) -> None:
                rig.proxy.heal()  # the history answers again: 11..160 handed late, once

                async def late_handled() -> bool:
                    return len(await collected(hub)) >= 210

                await wait_until(late_handled, timeout=60, what="11..160 replayed late")
                await wait_until(
                    lambda: any(isinstance(e, Replayed) for e in sink.events), timeout=10
                )
                collector.request_stop()

            collector = ActorRuntime(Collector, hub, id="collector", events=sink)
            async with anyio.create_task_group() as tg:
                await tg.start(collector.run)

                async def newer_handled() -> bool:
                    return len(await collected(hub)) >= 60

                await wait_until(newer_handled, timeout=30, what="161..210 handled while cut")
                lost = [e for e in sink.events if isinstance(e, Lost)]
                assert [(e.first, e.last, e.count, e.pending) for e in lost] == [
                    (11, 160, 150, True)
                ]
                assert [o["item"] for o in await collected(hub)] == [
                    *range(1, 11),
                    *range(161, 211),
                ]
                if restart:  # the pending range is in the checkpoint: the next start asks
                    collector.request_stop()
                else:
                    await healed(collector)
            if restart:
                collector = ActorRuntime(Collector, hub, id="collector", events=sink)
                async with anyio.create_task_group() as tg:
                    await tg.start(collector.run)
                    await healed(collector)
            sensor.request_stop()
        out = await collected(hub)
    assert [o["item"] for o in out] == [*range(1, 11), *range(161, 211), *range(11, 161)]
    assert [o["item"] for o in out if o["replayed"]] == list(range(11, 161))
    late = [(e.first, e.last, e.late) for e in sink.events if isinstance(e, Replayed)]
    assert late == [(11, 160, True)]
    assert len([e for e in sink.events if isinstance(e, Lost)]) == 1  # nothing stayed lost


async def test_with_a_reconstructor_a_cut_off_history_is_settled_by_stand_ins_once(
    rig: LeafRig, tmp_path: Path
) -> None:
    sink = MemorySink()
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await declare_qos(hub, UP.subject, QosSpec(reconstructor="linear"))
        async with anyio.create_task_group() as sensor_tg:
            sensor = await _hole_copied_then_cut(rig, edge, hub, tmp_path, sensor_tg)
            collector = ActorRuntime(Collector, hub, id="collector", events=sink)
            async with anyio.create_task_group() as tg:
                await tg.start(collector.run)

                async def all_handled() -> bool:
                    return len(await collected(hub)) >= 210

                await wait_until(all_handled, timeout=30, what="stand-ins and 161..210")
                rig.proxy.heal()
                await wait_domain(rig.hub.url, "edge")
                collector.request_stop()
            sensor.request_stop()
        out = await collected(hub)
    assert [o["item"] for o in out] == list(range(1, 211))
    assert [o["item"] for o in out if o["reconstructed"]] == list(range(11, 161))
    # linear between 10 and 161
    assert [o["t"] for o in out] == pytest.approx([float(n) for n in range(1, 211)])
    lost = [(e.first, e.last, e.pending) for e in sink.events if isinstance(e, Lost)]
    assert lost == [(11, 160, False)]
    assert not [e for e in sink.events if isinstance(e, Replayed)]
