"""Actors as children of a supervisor: ids are tree paths, stable across restarts,
so a restarted actor resumes from its checkpoint and emits each output once."""

from __future__ import annotations

import random

import anyio
import pytest

from diaspora import ActorRuntime
from diaspora.errors import ChildStartError, ConfigError
from diaspora.events import Exited, MemorySink, Restarted
from diaspora.fabric import Fabric
from diaspora.supervision import Strategy, Supervisor, SupervisorSpec
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from diaspora.workflow import actor_child
from tests.actor.sample_actors import RunningSum
from tests.actor.test_exactly_once import expected_sums, publish_numbers, stream_count

pytestmark = pytest.mark.anyio

N = 6000


async def test_crashing_actor_child_is_restarted_from_its_checkpoint_and_emits_once(
    fabric: Fabric,
) -> None:
    await fabric.ensure_stream("numbers")
    crash_at = set(random.Random(5).sample(range(600, N + 1), 8))
    sink = MemorySink()
    spec = SupervisorSpec(
        [actor_child("sum", RunningSum, fabric, args={"crash_at": crash_at})],
        intensity=10,
        period=60,
    )
    sup = Supervisor(spec, name="root", on_event=sink)

    async def all_out() -> bool:
        return await stream_count(fabric, "sums") >= N

    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        tg.start_soon(publish_numbers, fabric, N)
        await wait_until(all_out, timeout=60, interval=0.05)
        (record_,) = await sup.which_children()
        last = record_.runnable
        sup.request_stop()
    assert not crash_at
    assert len(sink.of(Restarted)) == 8
    assert all("ActorCrashed" in e.reason for e in sink.of(Exited))
    assert isinstance(last, ActorRuntime)
    assert last.id == "root.sum"
    assert last.stats.handled < N  # resumed from a checkpoint, not from the start
    stored = await read_stream(fabric, "sums")
    assert [m.data for m in stored] == expected_sums(N)
    assert {m.headers["Nats-Msg-Id"].split(":")[0] for m in stored} == {"root.sum"}


async def test_simple_one_for_one_actor_children_merge_start_arguments(fabric: Fabric) -> None:
    spec = SupervisorSpec(
        [actor_child("sum", RunningSum, fabric, args={"scale": 2})],
        strategy=Strategy.SIMPLE_ONE_FOR_ONE,
    )
    sup = Supervisor(spec, name="pool")
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        first = await sup.start_child({"scale": 3})
        second = await sup.start_child()
        sup.request_stop()
    assert isinstance(first, ActorRuntime)
    assert isinstance(second, ActorRuntime)
    assert (first.id, second.id) == ("pool.sum-1", "pool.sum-2")
    assert isinstance(first.actor, RunningSum)
    assert isinstance(second.actor, RunningSum)
    assert (first.actor.scale, second.actor.scale) == (3, 2)


async def test_actor_child_without_a_fabric_fails_to_start_saying_how_to_bind_one() -> None:
    sup = Supervisor(SupervisorSpec([actor_child("sum", RunningSum)]), name="root")
    with pytest.raises(ChildStartError) as caught:
        await sup.run()
    assert isinstance(caught.value.__cause__, ConfigError)
    assert "actor child 'root.sum' has no fabric" in str(caught.value.__cause__)
    assert "bind_fabric" in str(caught.value.__cause__)
