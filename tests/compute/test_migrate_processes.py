"""Live migration between two OS processes under steady traffic, with SIGKILLs injected.

Two process nodes run the ``counter`` actor (worker ``a``, its home, and
worker ``b``); one owns it, the other is its standby. A seeded random
schedule migrates it back and forth while inputs keep arriving, and
SIGKILLs the source or the destination process during pre-copy, around
the pause and switch, or just after the switch. In the end every input has
exactly one output, in order, each carrying the count the pure-Python
model gives, and the checkpointed state equals the model's.
"""

from __future__ import annotations

import os
import random
import signal

import anyio
import pytest

from diaspora.actor import CheckpointSlot
from diaspora.compute import MigrationPolicy, migrate
from diaspora.errors import MigrationFailed
from diaspora.fabric import Fabric
from diaspora.supervision import Supervisor
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import ProcessNode
from tests.compute.migrate_actors import IN, OUT, as_model, model
from tests.compute.migrate_rig import counter_nodes, owner, standby_up

pytestmark = pytest.mark.anyio

#: 8 keys of 16,384 int64 = 1 MiB of state: pre-copy takes a few rounds of milliseconds
WIDTH = 16_384
STEPS = ("none", "precopy", "late", "after")


async def pid_of(sup: Supervisor, worker: str) -> int:
    for record in await sup.which_children():
        if record.id == worker and isinstance(record.runnable, ProcessNode):
            pid = record.runnable.pid
            if pid is not None:
                return pid
    raise LookupError(worker)


async def run_schedule(fabric: Fabric, migrations: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    await fabric.ensure_stream(IN)
    sup = Supervisor(counter_nodes(fabric, intensity=10 * migrations, width=WIDTH), name="root")
    sent = 0
    feeding = True
    tally = {"migrated": 0, "failed": 0, "kills": 0}

    async def feed() -> None:
        nonlocal sent
        while feeding:
            await fabric.publish(IN, {"x": sent}, msg_id=f"in:{sent}")
            sent += 1
            await anyio.sleep(0.005)

    async def outputs() -> int:
        return len(await read_stream(fabric, OUT, missing_ok=True))

    async def settled() -> None:
        target = sent
        await wait_until(lambda: owner(fabric), timeout=30, what="an owner")
        other = "b" if await owner(fabric) == "a" else "a"
        await wait_until(lambda: standby_up(fabric, other), timeout=30, what="a standby")
        await wait_until(lambda: _at_least(outputs(), target), timeout=60, what=f"{target} outputs")

    policy = MigrationPolicy(budget_ms=5.0, timeout=2.0, chunk=256 * 1024)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        tg.start_soon(feed)
        await settled()
        for _ in range(migrations):
            source = await owner(fabric)
            assert source in ("a", "b")
            to = "b" if source == "a" else "a"
            step = rng.choice(STEPS)
            victim = rng.choice((source, to))
            delay = {"precopy": rng.uniform(0, 0.01), "late": rng.uniform(0.01, 0.05)}.get(step)

            async def kill(worker: str) -> None:
                os.kill(await pid_of(sup, worker), signal.SIGKILL)
                tally["kills"] += 1

            async with anyio.create_task_group() as moves:
                if delay is not None:

                    async def kill_later(worker: str, after: float) -> None:
                        await anyio.sleep(after)
                        await kill(worker)

                    moves.start_soon(kill_later, victim, delay)
                try:
                    await migrate(fabric, "counter", to=to, policy=policy, timeout=8.0)
                    tally["migrated"] += 1
                except MigrationFailed:
                    tally["failed"] += 1
            if step == "after":
                await kill(victim)
            await settled()
        feeding = False
        await settled()
        total = sent
        await wait_until(
            lambda: _checkpointed(fabric, total), timeout=30, what="a checkpoint of every input"
        )
        sup.request_stop()
    got = [m.data for m in await read_stream(fabric, OUT)]
    assert [o["x"] for o in got] == list(range(total))  # exactly once, in order
    assert [o["n"] for o in got] == [x + 1 for x in range(total)]
    record = await CheckpointSlot.peek(fabric, "counter", state=True)
    assert record is not None
    assert as_model(record.state) == model(list(range(total)), WIDTH)
    return tally


async def _at_least(count: object, target: int) -> bool:
    return await count >= target  # type: ignore[operator, misc]


async def _checkpointed(fabric: Fabric, total: int) -> bool:
    record = await CheckpointSlot.peek(fabric, "counter")
    return record is not None and record.positions.get(IN, 0) >= total


@pytest.mark.slow
async def test_ten_migrations_under_traffic_with_kills_lose_and_duplicate_nothing(
    fabric: Fabric,
) -> None:
    tally = await run_schedule(fabric, migrations=10, seed=14)
    print("TALLY", tally)
    assert tally["migrated"] >= 3  # the schedule is not all crashes
    assert tally["kills"] >= 3


@pytest.mark.soak
@pytest.mark.parametrize("seed", [1, 2])
async def test_fifty_migrations_with_kills_soak(fabric: Fabric, seed: int) -> None:
    tally = await run_schedule(fabric, migrations=50, seed=seed)
    print("TALLY", tally)
    assert tally["migrated"] >= 10
