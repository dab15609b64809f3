"""Live migration between two runtimes in one process (real nats-server)."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import anyio
import numpy as np
import pytest
from anyio.abc import TaskStatus
from migrate_actors import IN, OUT, CounterAt, as_model, model

from diaspora import ActorRuntime
from diaspora.actor import CheckpointSlot
from diaspora.compute import MigratableState, MigrationPolicy, migrate
from diaspora.compute._migrate_state import BLOCK, StateAssembly, chunks_of
from diaspora.errors import ChildShutdown, FencedOut, MigrationFailed
from diaspora.events import MemorySink, Migrated, MigrationAborted
from diaspora.fabric import Fabric
from diaspora.testing import read_stream, wait_until

pytestmark = pytest.mark.anyio


class Place:
    """Runs the counter at one worker, again after each exit (as a supervisor would)."""

    def __init__(self, fabric: Fabric, worker: str, home: bool = False) -> None:
        self.fabric, self.worker, self.home = fabric, worker, home
        self.runtime: ActorRuntime | None = None
        self.sink = MemorySink()
        self.starts = 0

    async def run(self) -> None:
        while True:
            start = CounterAt(self.worker, home=self.home, fabric=self.fabric)
            runtime = self.runtime = start()
            runtime._events = self.sink
            self.starts += 1
            with contextlib.suppress(FencedOut):
                await runtime.run()
            await anyio.sleep(0.01)

    @property
    def owns(self) -> bool:
        rt = self.runtime
        return rt is not None and rt.actor is not None and rt.running and rt.stats.handled > 0


async def outputs(fabric: Fabric) -> list[dict[str, int]]:
    return [m.data for m in await read_stream(fabric, OUT, missing_ok=True)]


async def feed(fabric: Fabric, xs: range, pace: float = 0.002) -> None:
    for x in xs:
        await fabric.publish(IN, {"x": x}, msg_id=f"in:{x}")
        await anyio.sleep(pace)


def test_state_tracks_keys_written_in_place() -> None:
    state = MigratableState({"a": np.zeros(4), "b": np.ones(2)})
    assert state.take_dirty() == ["a", "b"]
    state.mutable("a")[0] = 1.0
    state.touch("b")
    state["c"] = 3
    del state["b"]
    assert state.take_dirty() == ["a", "c"]
    assert state.take_deleted() == ["b"]
    assert state.take_dirty() == []
    with pytest.raises(KeyError):
        state.touch("b")


async def test_migrate_under_traffic_moves_state_and_positions(fabric: Fabric) -> None:
    await fabric.ensure_stream(IN)
    a, b = Place(fabric, "a", home=True), Place(fabric, "b")
    xs = range(600)
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run)
        await wait_until(lambda: a.runtime is not None and a.runtime.running, timeout=10)
        tg.start_soon(b.run)
        tg.start_soon(feed, fabric, xs)
        await wait_until(lambda: a.owns, timeout=10)
        first = await migrate(fabric, "counter", to="b")
        await wait_until(lambda: b.owns, timeout=10)
        back = await migrate(fabric, "counter", to="a", policy=MigrationPolicy(precopy=False))
        await wait_until(
            lambda: a.owns and a.runtime is not None and a.runtime.positions.get(IN, 0) >= len(xs),
            timeout=30,
        )
        state = dict(a.runtime.actor.state)  # type: ignore[union-attr]
        tg.cancel_scope.cancel()
    assert (first.origin, first.to, back.origin, back.to) == ("a", "b", "b", "a")
    assert first.rounds >= 1
    assert back.rounds == 0
    assert first.bytes > 0
    assert first.downtime_ms > 0
    got = await outputs(fabric)
    assert [o["x"] for o in got] == list(xs)  # exactly once, in order
    assert [o["n"] for o in got] == [x + 1 for x in xs]
    assert as_model(state) == model(list(xs))
    assert [type(e) for e in a.sink.of(Migrated)] == [Migrated]
    assert [type(e) for e in b.sink.of(Migrated)] == [Migrated]
    record = await CheckpointSlot.peek(fabric, "counter")
    assert record is not None
    assert record.placement == "a"


async def test_migration_to_a_missing_worker_aborts_and_source_runs_on(fabric: Fabric) -> None:
    await fabric.ensure_stream(IN)
    a = Place(fabric, "a", home=True)
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run)
        tg.start_soon(feed, fabric, range(100))
        await wait_until(lambda: a.owns, timeout=10)
        with pytest.raises(MigrationFailed, match="no standby"):
            await migrate(fabric, "counter", to="nowhere")
        await wait_until(
            lambda: a.runtime is not None and a.runtime.positions.get(IN, 0) >= 100, timeout=20
        )
        tg.cancel_scope.cancel()
    assert a.starts == 1
    (aborted,) = a.sink.of(MigrationAborted)
    assert aborted.step == "prepare"
    assert aborted.to == "nowhere"
    assert [o["x"] for o in await outputs(fabric)] == list(range(100))


def test_a_write_into_part_of_a_large_array_ships_only_its_blocks() -> None:
    state = MigratableState(big=np.zeros(1 << 17, dtype=np.float64))  # 1 MiB: 16 blocks
    copy = StateAssembly()
    for key, blocks in state.take_changes():
        for piece in chunks_of(key, state[key], 1 << 20, blocks):
            copy.put(piece)
    state.mutable("big", 10_000, 10_010)[:] = 7.0  # inside block 1
    state.mutable("big", 130_000, 131_072)[:] = 3.0  # the last block
    assert state.dirty_bytes() == 2 * BLOCK
    ((key, blocks),) = state.take_changes()
    assert (key, blocks) == ("big", [1, 15])
    sent = 0
    for piece in chunks_of(key, state[key], 1 << 20, blocks):
        copy.put(piece)
        sent += len(piece["b"])
    assert sent == 2 * BLOCK
    assert np.array_equal(copy.values["big"], state["big"])
    with pytest.raises(ValueError, match="C-contiguous"):
        MigratableState(t=np.zeros((4, 4)).T).mutable("t", 0, 2)


def test_state_made_from_a_decoded_checkpoint_is_writable() -> None:
    from diaspora import codec

    decoded = codec.decode(codec.encode({"a": np.arange(4)}))
    state = MigratableState(decoded)
    state.mutable("a")[0] = 7
    assert state["a"].tolist() == [7, 1, 2, 3]


async def test_cli_migrate_moves_the_actor_and_says_so(fabric: Fabric) -> None:
    await fabric.ensure_stream(IN)
    a, b = Place(fabric, "a", home=True), Place(fabric, "b")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "diaspora", "migrate", "counter", "--url", fabric.urls[0]]
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.run)
        await wait_until(lambda: a.runtime is not None and a.runtime.running, timeout=10)
        tg.start_soon(b.run)
        tg.start_soon(feed, fabric, range(200))
        await wait_until(lambda: a.owns, timeout=10)
        moved = await anyio.run_process([*command, "--to", "b"], env=env, check=False)
        assert moved.returncode == 0, moved.stderr.decode()[-3000:]
        refused = await anyio.run_process([*command, "--to", "nowhere"], env=env, check=False)
        await wait_until(
            lambda: b.runtime is not None and b.runtime.positions.get(IN, 0) >= 200, timeout=20
        )
        tg.cancel_scope.cancel()
    line = json.loads(moved.stdout.decode().strip().splitlines()[-1])
    assert (line["actor"], line["origin"], line["to"]) == ("counter", "a", "b")
    assert line["bytes"] > 0
    assert b"migrating counter" not in moved.stderr  # no progress spinner off a terminal
    assert refused.returncode == 1
    assert b"no standby" in refused.stderr
    assert [o["x"] for o in await outputs(fabric)] == list(range(200))


async def test_a_waiting_standby_stops_when_asked(fabric: Fabric) -> None:
    await fabric.ensure_stream(IN)
    standby = CounterAt("b", fabric=fabric)()
    ended: list[BaseException] = []

    async def run(*, task_status: TaskStatus[None]) -> None:
        try:
            await standby.run(task_status=task_status)
        except ChildShutdown as exc:  # a normal exit, for a supervisor
            ended.append(exc)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(run)  # a standby reports started while it waits
            await anyio.sleep(0.2)
            standby.request_stop()
    assert len(ended) == 1
    record = await CheckpointSlot.peek(fabric, "counter")
    assert record is None  # it never claimed the actor
