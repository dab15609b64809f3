"""A migrated producer's history moves with it: a consumer replays items emitted before the move.

Two runtimes in one process, each with its own state directory (as two
machines would have), against a real nats-server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from migrate_actors import HIN, HOUT, Relay

from diaspora import ActorRuntime, codec
from diaspora.compute import Migratable, MigrationPolicy, migrate
from diaspora.errors import FencedOut, MigrationFailed
from diaspora.events import MemorySink, Migrated
from diaspora.fabric import Fabric
from diaspora.streams import HistoryBuffer, HistoryItem, entry_size
from diaspora.streams._replay import fetch_history
from diaspora.streams._stages import HistoryTap
from diaspora.testing import read_stream, wait_until
from tests.streams.qos_actors import Collector

pytestmark = pytest.mark.anyio


async def feed(fabric: Fabric, xs: range, pace: float = 0.0) -> None:
    for x in xs:
        await fabric.publish(HIN, {"x": x}, msg_id=f"hin:{x}")
        if pace:
            await anyio.sleep(pace)


async def stored_up_to(fabric: Fabric, subject: str, seq: int) -> bool:
    _, last = await fabric.stream_bounds(subject)
    return last >= seq


async def owner(runtime: ActorRuntime) -> None:
    with contextlib.suppress(FencedOut):  # the source steps down after the switch
        await runtime.run()


@contextlib.asynccontextmanager
async def running(runtime: ActorRuntime) -> AsyncIterator[ActorRuntime]:
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        yield runtime
        runtime.request_stop()


def relay_at(fabric: Fabric, worker: str, state_dir: Path, sink: MemorySink) -> ActorRuntime:
    return ActorRuntime(
        Relay,
        fabric,
        id="relay",
        stages=[Migratable(worker, home=worker == "a")],
        state_dir=state_dir,
        events=sink,
    )


@pytest.mark.parametrize("precopy", [True, False], ids=["precopy", "stop-and-copy"])
async def test_items_emitted_before_a_migration_are_replayed_by_the_new_owner(
    fabric: Fabric, tmp_path: Path, precopy: bool
) -> None:
    await fabric.ensure_stream(HIN)
    await fabric.ensure_stream(HOUT, max_msgs=50)  # drops what the consumer has not read
    sink = MemorySink()
    a = relay_at(fabric, "a", tmp_path / "a", sink)
    b = relay_at(fabric, "b", tmp_path / "b", sink)
    async with anyio.create_task_group() as tg:
        tg.start_soon(owner, a)
        await wait_until(lambda: a.running, timeout=10)
        tg.start_soon(owner, b)  # the standby
        await feed(fabric, range(20))
        first = ActorRuntime(Collector, fabric, id="collector", inputs=[HOUT])
        async with running(first):
            await wait_until(lambda: first.positions.get(HOUT, 0) >= 20, timeout=10)
        await feed(fabric, range(20, 200))  # 21..200: emitted at a, past the retention
        await wait_until(lambda: a.positions.get(HIN, 0) >= 200, timeout=20)
        await wait_until(lambda: stored_up_to(fabric, HOUT, 200), timeout=10)
        # 201..300 while it moves: some emitted at a during the rounds (shipped as deltas,
        # the last ones during the pause), the rest at b
        tg.start_soon(feed, fabric, range(200, 300), 0.002)
        done = await migrate(fabric, "relay", to="b", policy=MigrationPolicy(precopy=precopy))
        await wait_until(lambda: b.positions.get(HIN, 0) >= 300, timeout=20)
        await wait_until(lambda: stored_up_to(fabric, HOUT, 300), timeout=10)
        assert await fabric.stream_bounds(HOUT) == (251, 300)
        assert not a.running  # the source stepped down, its history server with it
        (tap,) = [s for s in b.stages if isinstance(s, HistoryTap)]
        history = tap.history
        moved = [history.get(HOUT, n) for n in range(1, 301)]
        second = ActorRuntime(Collector, fabric, id="collector", inputs=[HOUT])
        async with running(second):
            await wait_until(lambda: second.positions.get(HOUT, 0) >= 300, timeout=30)
        lost = second.stats.lost
        tg.cancel_scope.cancel()
    out: list[dict[str, Any]] = [m.data for m in await read_stream(fabric, "collected")]
    assert [x["item"] for x in out] == list(range(1, 301))  # in order, none lost or doubled
    assert [x["t"] for x in out] == [float(i) for i in range(1, 301)]
    assert [x["replayed"] for x in out] == [False] * 20 + [True] * 230 + [False] * 50
    assert lost == 0
    assert all(isinstance(x, HistoryItem) for x in moved)  # b holds what a emitted too
    assert (done.origin, done.to) == ("a", "b")
    shipped = sum(entry_size(x.payload, x.headers) for x in moved[:200] if x is not None)
    assert done.bytes >= shipped  # the history's bytes count in Migrated.bytes


def test_each_round_ships_only_the_items_added_since_the_last(tmp_path: Path) -> None:
    from diaspora.compute._migrate_history import HistoryShipper  # the module under test

    with HistoryBuffer(tmp_path, max_items=5) as buffer:
        for n in range(1, 9):  # 1..3 evicted: not held, not shipped
            buffer.add("s.a" if n % 2 else "s.b", n, b"x" * n)
        shipper = HistoryShipper(buffer)
        assert shipper.pending_bytes() > 0
        first = [[s, n, p] for batch in shipper.batches(1 << 20) for s, n, _, p in batch]
        assert sorted(n for _, n, _ in first) == [4, 5, 6, 7, 8]
        assert shipper.pending_bytes() == 0
        assert list(shipper.batches(1 << 20)) == []
        buffer.add("s.a", 9, b"y")
        buffer.add("s.c", 1, b"z")
        again = [(s, n) for batch in shipper.batches(1 << 20) for s, n, _, _ in batch]
        assert sorted(again) == [("s.a", 9), ("s.c", 1)]
        assert shipper.bytes == sum(range(4, 9)) + 2
        small = list(shipper.batches(1))  # nothing new: nothing at all, whatever the size
        assert small == []


async def migrate_when_ready(fabric: Fabric, to: str) -> Migrated:
    """Migrate once the standby at ``to`` subscribed (the source restarts it after a move)."""
    for _ in range(100):
        try:
            return await migrate(fabric, "relay", to=to)
        except MigrationFailed as exc:
            if "no standby" not in str(exc):
                raise
            await anyio.sleep(0.05)
    raise AssertionError(f"no standby at {to!r}")


async def test_a_history_left_at_the_destination_by_an_earlier_stay_is_brought_up_to_date(
    fabric: Fabric, tmp_path: Path
) -> None:
    await fabric.ensure_stream(HIN)
    await fabric.ensure_stream(HOUT)
    sink = MemorySink()
    runtimes: dict[str, ActorRuntime] = {}

    async def place(worker: str) -> None:
        while True:  # as a supervisor would: start it again (as a standby) after it moves
            runtime = runtimes[worker] = relay_at(fabric, worker, tmp_path / worker, sink)
            await owner(runtime)
            await anyio.sleep(0.01)

    def handled(worker: str, n: int) -> bool:
        rt = runtimes.get(worker)
        return rt is not None and rt.running and rt.positions.get(HIN, 0) >= n

    async with anyio.create_task_group() as tg:
        tg.start_soon(place, "a")
        await wait_until(lambda: "a" in runtimes and runtimes["a"].running, timeout=10)
        tg.start_soon(place, "b")
        await feed(fabric, range(100))
        await wait_until(lambda: handled("a", 100), timeout=20)
        await migrate(fabric, "relay", to="b")
        await feed(fabric, range(100, 200))
        await wait_until(lambda: handled("b", 200), timeout=20)
        back = await migrate_when_ready(fabric, to="a")  # a's directory holds 1..100 already
        await feed(fabric, range(200, 250))
        await wait_until(lambda: handled("a", 250), timeout=20)
        got = [
            (x.item, x.payload)
            async for x in fetch_history(fabric, "relay", HOUT, 1, 250)
            if isinstance(x, HistoryItem)
        ]
        tg.cancel_scope.cancel()
    assert back.to == "a"
    assert [n for n, _ in got] == list(range(1, 251))  # once each, in order, from a
    assert [codec.decode(p)["t"] for _, p in got] == [float(n) for n in range(1, 251)]
