"""Elastic catch-up on partitioned subjects: each partition reads only its share, a
restarted group scales out on its backlog, and every rebalance keeps outputs exactly
once, per key in order."""

from __future__ import annotations

import functools
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from diaspora import Actor, ActorRuntime, Message
from diaspora.compute import ScaleOutGroup
from diaspora.errors import ConfigError, PartitionKeyRequired, StreamNotFound
from diaspora.fabric import Fabric, partition_of, partition_stream, stream_partitions
from diaspora.fabric import headers as H
from diaspora.streams import OverloadPolicy, QosSpec, declare_qos
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream

pytestmark = pytest.mark.anyio

PARTITIONS = 4
KEYS = 16


class Frames(Actor):
    """Emits ``count`` items on ``frames``, keyed ``k0..k15`` in turn, then idles."""

    outputs = ("frames",)

    def __init__(self, count: int, first: int = 1, pace: float = 0.0) -> None:
        self.first, self.last, self.pace = first, first + count - 1, pace

    async def produce(self) -> None:
        for n in range(self.first, self.last + 1):
            await self.emit("frames", {"n": n}, key=f"k{n % KEYS}", item=n)
            if self.pace:
                await anyio.sleep(self.pace)
        await anyio.sleep_forever()


class Tally(Actor):
    """Counts items per key (state per partition); emits ``(key, n, item)`` for each.

    Crashes (the supervisor restarts the partition from its checkpoint) the first
    time it sees an item in ``crash_on``.
    """

    inputs = ("frames",)
    checkpoint_every = 50
    on_poison = "crash"
    max_attempts = 5

    def __init__(
        self, delay: float = 0.0, out: str = "tallied", crash_on: set[int] | None = None
    ) -> None:
        self.delay, self.out, self.crash_on = delay, out, crash_on
        self.counts: dict[str, int] = {}

    async def handle(self, msg: Message) -> None:
        if self.delay:
            await anyio.sleep(self.delay)
        if self.crash_on is not None and msg.data["n"] in self.crash_on:
            self.crash_on.discard(msg.data["n"])
            raise RuntimeError(f"injected crash on item {msg.data['n']}")
        key = msg.key or ""
        self.counts[key] = self.counts.get(key, 0) + 1
        await self.emit(self.out, {"key": key, "n": self.counts[key], "item": msg.data["n"]})

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def restore(self, state: dict[str, int]) -> None:
        self.counts = dict(state)


async def produce(fabric: Fabric, count: int, *, first: int = 1, pace: float = 0.0) -> None:
    """Run a ``Frames`` source until its ``count`` items are in the stream."""
    source = ActorRuntime(
        Frames, fabric, id=f"frames{first}", args={"count": count, "first": first, "pace": pace}
    )
    async with anyio.create_task_group() as tg:
        await tg.start(source.run)
        await wait_until(lambda: source.stats.emitted >= count, timeout=60)
        source.request_stop()


async def setup_input(fabric: Fabric, max_lag: int) -> None:
    await fabric.ensure_stream("frames")
    policy = OverloadPolicy.scale_out(max_replicas=PARTITIONS)
    await declare_qos(fabric, "frames", QosSpec(max_lag_items=max_lag, policy=policy))
    await partition_stream(fabric, "frames", PARTITIONS)


def check_exactly_once_in_key_order(out: Sequence[dict[str, Any]], items: int) -> None:
    assert sorted(x["item"] for x in out) == list(range(1, items + 1))  # none lost or doubled
    for key in {x["key"] for x in out}:
        mine = [x for x in out if x["key"] == key]
        assert [x["n"] for x in mine] == list(range(1, len(mine) + 1))  # counted in order
        assert [x["item"] for x in mine] == sorted(x["item"] for x in mine)  # handled in order


def share(items: range) -> dict[int, int]:
    """How many of ``items`` each partition owns."""
    return dict(sorted(Counter(partition_of(f"k{n % KEYS}", PARTITIONS) for n in items).items()))


async def catch_up(fabric: Fabric, group: ScaleOutGroup, out: str, total: int) -> float:
    """Run ``group`` until ``total`` outputs are on ``out``; the seconds it took."""
    async with anyio.create_task_group() as tg:
        started = time.perf_counter()
        await tg.start(group.run)
        await wait_until(
            lambda: _count(fabric, out, total), timeout=120, interval=0.05, what="caught up"
        )
        took = time.perf_counter() - started
        group.request_stop()
    return took


async def _count(fabric: Fabric, subject: str, total: int) -> bool:
    try:
        return (await fabric.stream_bounds(subject))[1] >= total
    except StreamNotFound:  # no output yet
        return False


async def test_a_restarted_group_scales_out_on_its_backlog_and_reads_each_item_once(
    fabric: Fabric,
) -> None:
    backlog, delay = 10_000, 0.0005
    await setup_input(fabric, max_lag=500)
    await produce(fabric, 100)
    groups: dict[str, ScaleOutGroup] = {}
    for name, most in (("elastic", PARTITIONS), ("fixed", 1)):
        args = {"delay": delay, "out": f"{name}_out"}
        first = ScaleOutGroup(
            Tally, fabric, id=name, partitions=PARTITIONS, max_replicas=most, args=args
        )
        await catch_up(fabric, first, f"{name}_out", 100)  # a checkpoint of each partition
        groups[name] = ScaleOutGroup(
            Tally, fabric, id=name, partitions=PARTITIONS, max_replicas=most, args=args
        )
    await produce(fabric, backlog, first=101)  # the backlog that piled up while they were down

    took = {}
    for name, group in groups.items():  # one after the other: the same machine for each
        took[name] = await catch_up(fabric, group, f"{name}_out", 100 + backlog)
    print(
        f"catch-up of {backlog} items: elastic {took['elastic']:.2f}s, fixed {took['fixed']:.2f}s"
    )

    elastic, fixed = groups["elastic"], groups["fixed"]
    assert max(r for _, r, _ in elastic.history) > 1  # it scaled out while lagging
    assert max(r for _, r, _ in fixed.history) == 1
    for name in groups:
        out = [m.data for m in await read_stream(fabric, f"{name}_out")]
        check_exactly_once_in_key_order(out, 100 + backlog)
    for group in groups.values():
        # each partition was delivered only its own items: reads equal the input
        assert group.deliveries() == share(range(101, 101 + backlog))
        assert sum(group.deliveries().values()) / backlog == 1.0


async def test_whole_input_partitions_each_read_everything(fabric: Fabric) -> None:
    """The old layout, for contrast: without partitioned subjects every partition reads it all."""
    await fabric.ensure_stream("frames")
    policy = OverloadPolicy.scale_out(max_replicas=2)
    await declare_qos(fabric, "frames", QosSpec(max_lag_items=10_000, policy=policy))
    await produce(fabric, 400)
    group = ScaleOutGroup(Tally, fabric, id="whole", partitions=PARTITIONS, partitioned=False)
    await catch_up(fabric, group, "tallied", 400)
    check_exactly_once_in_key_order([m.data for m in await read_stream(fabric, "tallied")], 400)
    assert group.deliveries() == dict.fromkeys(range(PARTITIONS), 400)
    assert await stream_partitions(fabric, "frames") is None


@pytest.mark.parametrize(("seed", "crashes"), [(1, 0), (2, 0), (3, 3)])
async def test_rebalances_under_traffic_keep_outputs_exactly_once_in_key_order(
    fabric: Fabric, seed: int, crashes: int
) -> None:
    rng = random.Random(seed)
    items = 1500
    crash_on = set(rng.sample(range(100, items), crashes))
    await setup_input(fabric, max_lag=10**6)  # the test decides every resize
    args = {"delay": 0.001, "crash_on": crash_on}
    group = ScaleOutGroup(Tally, fabric, id="tally", partitions=PARTITIONS, args=args)
    sizes = [rng.randint(2, PARTITIONS) for _ in range(3)] + [rng.randint(1, 2) for _ in range(2)]
    async with anyio.create_task_group() as tg:
        await tg.start(group.run)
        tg.start_soon(functools.partial(produce, fabric, items, pace=0.001))
        for size in [*sizes, 1]:  # out, and back in
            await anyio.sleep(rng.uniform(0.2, 0.6))
            await group.resize(size)
        await wait_until(lambda: _count(fabric, "tallied", items), timeout=60, interval=0.05)
        group.request_stop()
    out = [m.data for m in await read_stream(fabric, "tallied")]
    check_exactly_once_in_key_order(out, items)
    assert [r for _, r, _ in group.history][-1:] == [1]
    assert not crash_on  # every injected crash happened
    if not crashes:  # (a crashed partition reads again from its checkpoint)
        assert sum(group.deliveries().values()) == items  # none read another's items


async def test_plain_publishes_on_a_partitioned_subject_are_read_by_every_partition(
    fabric: Fabric,
) -> None:
    """A publisher that cannot key the subject still gets each item handled once, by its
    key's partition, at the old price: every partition reads it."""
    await setup_input(fabric, max_lag=10**6)
    for n in range(1, 41):
        await fabric.publish("frames", {"n": n}, headers={H.KEY: f"k{n % KEYS}"})
    group = ScaleOutGroup(Tally, fabric, id="tally", partitions=PARTITIONS)
    await catch_up(fabric, group, "tallied", 40)
    check_exactly_once_in_key_order([m.data for m in await read_stream(fabric, "tallied")], 40)
    assert group.deliveries() == dict.fromkeys(range(PARTITIONS), 40)


async def test_an_actor_outside_the_group_reads_every_partition(fabric: Fabric) -> None:
    await setup_input(fabric, max_lag=10**6)
    await fabric.publish("frames", {"n": 1}, headers={H.KEY: "k1"})  # a bare one too
    await produce(fabric, 299, first=2)
    tally = ActorRuntime(Tally, fabric, id="archive")
    async with anyio.create_task_group() as tg:
        await tg.start(tally.run)
        await wait_until(lambda: _count(fabric, "tallied", 300), timeout=30)
        tally.request_stop()
    check_exactly_once_in_key_order([m.data for m in await read_stream(fabric, "tallied")], 300)
    assert tally.stats.delivered == 300


async def test_emit_without_key_to_a_partitioned_subject_is_refused(fabric: Fabric) -> None:
    await setup_input(fabric, max_lag=100)

    class Unkeyed(Actor):
        outputs = ("frames",)

        async def produce(self) -> None:
            await self.emit("frames", {"n": 1})

    error = await failure_of(ActorRuntime(Unkeyed, fabric, id="unkeyed"))
    assert isinstance(error, PartitionKeyRequired)
    assert re.search(r"'frames' without key=.*4 partitions", str(error))


async def failure_of(runtime: ActorRuntime) -> BaseException:
    """What ``runtime`` failed with, unwrapped (it must fail)."""
    try:
        await runtime.run()
    except BaseException as exc:
        error: BaseException = exc
        while True:
            if isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                error = error.exceptions[0]
            elif not isinstance(error, ConfigError) and error.__cause__ is not None:
                error = error.__cause__
            else:
                return error
    raise AssertionError(f"{runtime.id} did not fail")


async def test_a_subject_keeps_its_number_of_partitions(fabric: Fabric) -> None:
    await setup_input(fabric, max_lag=100)
    await partition_stream(fabric, "frames", PARTITIONS)  # again: nothing changes
    with pytest.raises(ConfigError, match=r"'frames'.*already split into 4 partitions, not 8"):
        await partition_stream(fabric, "frames", 8)
    assert await stream_partitions(fabric, "frames") == PARTITIONS
    await fabric.ensure_stream("frames")  # re-declaring the stream keeps its partitions
    assert await stream_partitions(fabric, "frames") == PARTITIONS
    error = await failure_of(ActorRuntime(Tally, fabric, id="odd", partition=(0, 8)))
    assert isinstance(error, ConfigError)
    assert re.search(r"split into 4 partitions.*partition 0 of 8", str(error))
