"""Bridges between sites: a hub (domain hpc) and an edge (domain edge) joined by a leaf link."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import anyio
import pytest
from leafrig import LeafRig, leaf_rig, publish_numbers, wait_domain

from diaspora import ActorRuntime, codec
from diaspora.errors import BridgeError, ConfigError, StreamFull
from diaspora.events import Lost, MemorySink
from diaspora.fabric import (
    Bridge,
    BridgeMonitor,
    Fabric,
    GapTracker,
    ensure_bridge,
    origin_limits,
    origin_of,
    read_stored,
)
from diaspora.testing import wait_until
from tests.actor.sample_actors import RunningSum

pytestmark = pytest.mark.anyio

UP = Bridge("edge.numbers", from_domain="edge", to_domain="hpc")


@pytest.fixture
async def rig() -> AsyncIterator[LeafRig]:
    async with leaf_rig() as rig:
        yield rig


async def count(fabric: Fabric, stream: str, domain: str | None = None) -> int:
    """Messages in ``stream`` (0 while it does not exist or its site is cut off)."""
    try:
        info = await fabric._connection.jetstream(domain).stream_info(stream)
    except Exception:
        return 0
    return int(info.state.messages)


async def wait_count(fabric: Fabric, stream: str, n: int, timeout: float = 60.0) -> None:
    async def reached() -> bool:
        return await count(fabric, stream) >= n

    await wait_until(reached, timeout=timeout, interval=0.05)


async def ids_at(fabric: Fabric, subject: str) -> list[str]:
    return [m.headers["Nats-Msg-Id"] async for m in read_stored(fabric, subject, headers_only=True)]


async def test_an_up_bridge_delivers_a_backlog_from_a_cut_exactly_once_in_order(
    rig: LeafRig,
) -> None:
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject, duplicate_window=120)
        info = await ensure_bridge(hub, UP)
        assert info.config.subjects in (None, [])
        assert info.config.duplicate_window == pytest.approx(120)
        assert await ensure_bridge(hub, UP)  # idempotent: nothing changes
        await publish_numbers(rig.edge.url, UP.subject, 0, 10_000)
        await wait_count(hub, UP.stream, 10_000)
        rig.proxy.cut()
        await wait_domain(rig.hub.url, "edge", up=False)
        await publish_numbers(rig.edge.url, UP.subject, 10_000, 15_000)
        assert await count(edge, UP.stream) == 15_000
        rig.proxy.heal()
        await wait_count(hub, UP.stream, 15_000)
        stored = [m async for m in read_stored(hub, UP.subject, headers_only=True)]
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [
        f"edge.numbers:{i}" for i in range(15_000)
    ]
    assert [origin_of(m.headers)[0] for m in stored[:3]] == [1, 2, 3]  # type: ignore[index]
    assert stored[-1].headers["X-Instrument"] == "det1"
    assert {m.subject for m in stored} == {UP.subject}


@pytest.mark.parametrize(
    "outage", [pytest.param(3.0, id="3s"), pytest.param(25.0, id="25s", marks=pytest.mark.soak)]
)
async def test_a_cut_at_1000_msgs_per_s_resumes_and_loses_nothing(
    rig: LeafRig, outage: float
) -> None:
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject)
        await ensure_bridge(hub, UP)
        total = int(1000 * (outage + 6))
        resumed_after: list[float] = []

        async def link() -> None:
            await anyio.sleep(2.0)
            rig.proxy.cut()
            await anyio.sleep(outage)
            before = await count(hub, UP.stream)
            rig.proxy.heal()
            healed = time.monotonic()

            async def moved() -> bool:
                return await count(hub, UP.stream) > before

            await wait_until(moved, timeout=120, interval=0.02)
            resumed_after.append(time.monotonic() - healed)

        async with anyio.create_task_group() as tg:
            tg.start_soon(link)
            await publish_numbers(rig.edge.url, UP.subject, 0, total, rate=1000)
        await wait_count(hub, UP.stream, total, timeout=120)
        ids = await ids_at(hub, UP.subject)
    print(f"outage {outage}s: resumed {resumed_after[0]:.2f}s after the link returned")
    assert ids == [f"edge.numbers:{i}" for i in range(total)]


async def test_an_actor_at_the_hub_consumes_the_bridged_subject_once_across_a_restart(
    rig: LeafRig,
) -> None:
    n = 2_000
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject)
        await ensure_bridge(hub, UP)
        await publish_numbers(rig.edge.url, UP.subject, 0, n // 2)

        async def outputs() -> int:
            return await count(hub, "sums")

        for target in (n // 4, n):
            runtime = ActorRuntime(RunningSum, hub, id="sum", inputs=[UP.subject])
            async with anyio.create_task_group() as tg:
                await tg.start(runtime.run)
                if target == n:
                    await publish_numbers(rig.edge.url, UP.subject, n // 2, n)
                await wait_until(
                    lambda r=runtime, t=target: r.positions.get(UP.subject, 0) >= t, timeout=60
                )
                runtime.request_stop()  # a restart partway: the second run resumes
        await wait_count(hub, "sums", n)
        sums = [codec.decode(m.payload) async for m in read_stored(hub, "sums")]
    totals = [s["total"] for s in sums]
    assert totals == [i * (i + 1) // 2 for i in range(n)]
    assert [s["seq"] for s in sums] == list(range(1, n + 1))


async def test_a_mirror_down_serves_while_cut_and_catches_up_after(rig: LeafRig) -> None:
    down = Bridge("hpc.model", from_domain="hpc", to_domain="edge", direction="down")
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await hub.ensure_stream(down.subject)
        for version in range(3):
            await hub.publish(down.subject, {"version": version}, msg_id=f"v{version}")
        info = await ensure_bridge(edge, down)
        assert info.config.mirror is not None
        await wait_count(edge, down.stream, 3)
        rig.proxy.cut()
        await wait_domain(rig.edge.url, "hpc", up=False)
        # cut off, the edge still serves the model it has
        served = [codec.decode(m.payload) async for m in read_stored(edge, down.subject)]
        assert served == [{"version": v} for v in range(3)]
        await publish_numbers(rig.hub.url, down.subject, 3, 5)
        rig.proxy.heal()
        await wait_count(edge, down.stream, 5)
        after = [m async for m in read_stored(edge, down.subject)]
    assert [m.seq for m in after] == [1, 2, 3, 4, 5]
    assert codec.decode(after[-1].payload) == {"x": 4}
    assert after[0].headers["Nats-Msg-Id"] == "v0"


async def test_an_origin_too_small_for_the_outage_is_reported_lost_with_the_range(
    rig: LeafRig,
) -> None:
    sink = MemorySink()
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject, max_msgs=2_000)
        await ensure_bridge(hub, UP)
        await publish_numbers(rig.edge.url, UP.subject, 0, 1_000)
        await wait_count(hub, UP.stream, 1_000)
        rig.proxy.cut()
        await wait_domain(rig.hub.url, "edge", up=False)
        await publish_numbers(rig.edge.url, UP.subject, 1_000, 6_000)  # keeps 4001..6000
        rig.proxy.heal()
        await wait_count(hub, UP.stream, 3_000)
        monitor = BridgeMonitor(hub, UP, sink=sink)
        assert await monitor.scan() == [(1_001, 4_000)]
        assert await monitor.scan() == []  # each hole reported once
    lost = [e for e in sink.events if isinstance(e, Lost)]
    assert len(lost) == 1
    assert (lost[0].first, lost[0].last, lost[0].count, lost[0].by) == (
        1_001,
        4_000,
        3_000,
        "origin",
    )
    assert lost[0].subject == UP.subject
    assert lost[0].producer == "edge"


async def test_a_mirror_gap_is_reported_on_its_own_sequences(rig: LeafRig) -> None:
    down = Bridge("hpc.model", from_domain="hpc", to_domain="edge", direction="down")
    sink = MemorySink()
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await hub.ensure_stream(down.subject, max_msgs=10)
        await ensure_bridge(edge, down)
        await publish_numbers(rig.hub.url, down.subject, 0, 5)
        await wait_count(edge, down.stream, 5)
        rig.proxy.cut()
        await wait_domain(rig.edge.url, "hpc", up=False)
        await publish_numbers(rig.hub.url, down.subject, 5, 30)  # the hub keeps 21..30
        rig.proxy.heal()

        async def last_is_30() -> bool:
            return [m.seq async for m in read_stored(edge, down.subject)][-1:] == [30]

        await wait_until(last_is_30, timeout=60, interval=0.1)
        assert await BridgeMonitor(edge, down, sink=sink).scan() == [(6, 20)]


async def test_a_wrong_origin_domain_is_refused_before_anything_is_created(
    rig: LeafRig,
) -> None:
    typo = Bridge("edge.numbers", from_domain="egde", to_domain="hpc")
    async with Fabric(rig.hub.url, name="hub") as hub:
        with pytest.raises(BridgeError, match=re.escape("no JetStream answers in domain 'egde'")):
            await ensure_bridge(hub, typo)
        assert await count(hub, typo.stream) == 0
        with pytest.raises(
            BridgeError, match=re.escape("no stream 'edge_numbers' in domain 'edge'")
        ):
            await ensure_bridge(hub, UP)  # the origin stream is not declared yet
        assert await count(hub, UP.stream) == 0


async def test_a_subject_bound_at_the_destination_too_is_refused(rig: LeafRig) -> None:
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject)
        await hub._connection.jetstream().add_stream(name="HUB_COPY", subjects=[UP.subject])
        with pytest.raises(BridgeError, match="stream 'HUB_COPY' in domain 'hpc' already captures"):
            await ensure_bridge(hub, UP)


async def test_the_copy_is_consumed_at_the_destination_not_declared_there(rig: LeafRig) -> None:
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject)
        await ensure_bridge(hub, UP)
        info = await hub.require_stream(UP.subject)  # an input at the hub: accepted
        assert info.config.sources
        assert await hub.stream_bounds(UP.subject) == (0, 0)
        with pytest.raises(ConfigError, match=re.escape("bridge's copy of $JS.edge.API")):
            await hub.ensure_stream(UP.subject)
        with pytest.raises(ConfigError, match="declare and publish the subject at its origin"):
            await hub.require_stream(UP.subject, min_duplicate_window=60)  # as an output


async def test_bridge_fields_are_checked() -> None:
    with pytest.raises(BridgeError, match="direction='sideways'"):
        Bridge("a.b", "edge", "hpc", direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(BridgeError, match="both 'edge'"):
        Bridge("a.b", "edge", "edge")
    with pytest.raises(BridgeError, match=re.escape("to_domain='h.p'")):
        Bridge("a.b", "edge", "h.p")
    limits = origin_limits(rate=1000, longest_outage=25, message_bytes=128)
    assert (limits.max_msgs, limits.max_bytes, limits.discard) == (50_000, 6_400_000, "old")


async def test_an_origin_sized_to_discard_new_refuses_the_instrument_while_cut(
    rig: LeafRig,
) -> None:
    limits = origin_limits(rate=10, longest_outage=5, margin=1.0, discard="new")  # 50 msgs
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject, limits)
        await ensure_bridge(hub, UP)
        rig.proxy.cut()
        await wait_domain(rig.hub.url, "edge", up=False)
        for i in range(50):
            await edge.publish(UP.subject, {"x": i}, msg_id=f"m{i}")
        with pytest.raises(StreamFull, match=re.escape("refused: its stream is full")):
            await edge.publish(UP.subject, {"x": 50}, msg_id="m50")
        rig.proxy.heal()
        await wait_count(hub, UP.stream, 50)
        ids = await ids_at(hub, UP.subject)
    assert ids == [f"m{i}" for i in range(50)]


@pytest.mark.parametrize("which", ["hub", "edge"])
async def test_an_up_bridge_resumes_exactly_once_after_a_server_restart(
    rig: LeafRig, which: str
) -> None:
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject)
        await ensure_bridge(hub, UP)
        await publish_numbers(rig.edge.url, UP.subject, 0, 1_000)
        await wait_count(hub, UP.stream, 1_000)
        server = rig.hub if which == "hub" else rig.edge
        await server.stop()
        if which == "hub":
            await publish_numbers(rig.edge.url, UP.subject, 1_000, 2_000)
        await server.start()
        restarted = time.monotonic()
        if which == "edge":
            await publish_numbers(rig.edge.url, UP.subject, 1_000, 2_000)
        await wait_count(hub, UP.stream, 2_000)
        print(f"{which} restart: all 2000 at the hub {time.monotonic() - restarted:.2f}s after")
        ids = await ids_at(hub, UP.subject)
    assert ids == [f"edge.numbers:{i}" for i in range(2_000)]


def test_gaps_are_followed_per_origin_and_restart_with_a_recreated_origin() -> None:
    tracker = GapTracker(up=True)

    def src(name: str, seq: int, ident: str = "T1") -> dict[str, str]:
        return {"Nats-Stream-Source": f"{name}:h {seq} > > x.y {ident}"}

    seen = [
        tracker.observe(1, src("A", 1)),
        tracker.observe(2, src("B", 1)),  # another origin interleaved: not a gap
        tracker.observe(3, src("A", 2)),
        tracker.observe(4, src("B", 5)),  # B skipped 2..4
        tracker.observe(5, src("A", 1, ident="T2")),  # A recreated: starts again
        tracker.observe(6, {}),  # published at the destination itself
    ]
    assert seen == [None, None, None, (2, 4), None, None]


async def test_switching_a_server_managed_bridge_to_a_durable_consumer_keeps_exactly_once(
    rig: LeafRig,
) -> None:
    managed = Bridge(UP.subject, "edge", "hpc", byo_consumer=False, duplicate_window=60)
    async with Fabric(rig.edge.url, name="edge") as edge, Fabric(rig.hub.url, name="hub") as hub:
        await edge.ensure_stream(UP.subject)
        info = await ensure_bridge(hub, managed)
        assert info.config.sources is not None
        assert info.config.sources[0].consumer is None
        await publish_numbers(rig.edge.url, UP.subject, 0, 500)
        await wait_count(hub, UP.stream, 500)
        info = await ensure_bridge(hub, UP)  # the source now names the durable consumer
        assert info.config.sources is not None
        assert [s.consumer.name for s in info.config.sources if s.consumer] == ["dsp-bridge-hpc"]
        assert info.config.duplicate_window == pytest.approx(120)
        await publish_numbers(rig.edge.url, UP.subject, 500, 1_000)
        await wait_count(hub, UP.stream, 1_000)

        async def all_acked() -> bool:  # everything the durable consumer delivered has landed
            info = await edge._connection.jetstream().consumer_info(UP.stream, UP.consumer_name)
            return info.ack_floor.stream_seq >= 1_000 and not info.num_ack_pending

        await wait_until(all_acked, timeout=30)
        ids = await ids_at(hub, UP.subject)
    assert ids == [f"edge.numbers:{i}" for i in range(1_000)]
