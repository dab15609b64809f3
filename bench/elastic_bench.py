"""Elastic catch-up: a keyed group restarted on a 10k backlog, with and without scale-out.

A keyed, stateful consumer (4 partitions, each item costs 0.5 ms of waiting
in ``handle``) is stopped, 10,000 items pile up on its input, and it is
started again. The row is the time until every item is handled with elastic
scale-up (``max_replicas=4``) against the same group held at one replica,
measured one after the other in the same run (the ratio is the speed-up's
inverse). Then the deliveries per input item: each partition's consumer
counts what it was delivered; on a partitioned subject the sum is the input
(1.0), against the old whole-input layout (every partition reads all).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

import anyio

from bench.report import Report, Row
from diaspora import Actor, ActorRuntime, Message
from diaspora.compute import ScaleOutGroup
from diaspora.fabric import EmbeddedServer, Fabric, partition_stream
from diaspora.streams import OverloadPolicy, QosSpec, declare_qos
from diaspora.testing import wait_until

PARTITIONS = 4
KEYS = 16
DELAY = 0.0005


class Items(Actor):
    """Emits ``count`` keyed items from ``first`` on ``subject``, then idles."""

    def __init__(self, subject: str, first: int, count: int) -> None:
        self.subject, self.first, self.count = subject, first, count

    async def produce(self) -> None:
        for n in range(self.first, self.first + self.count):
            await self.emit(self.subject, {"n": n}, key=f"k{n % KEYS}", item=n)
        await anyio.sleep_forever()


class Counter(Actor):
    """Counts per key, waiting ``DELAY`` per item (I/O-bound work), emits nothing."""

    checkpoint_every = 200

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    async def handle(self, msg: Message) -> None:
        await anyio.sleep(DELAY)
        key = msg.key or ""
        self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def restore(self, state: dict[str, int]) -> None:
        self.counts = dict(state)


def _consumer(subject: str) -> type[Counter]:
    return type(f"Counter_{subject.replace('.', '_')}", (Counter,), {"inputs": (subject,)})


async def _produce(fabric: Fabric, subject: str, first: int, count: int) -> None:
    source = ActorRuntime(
        Items,
        fabric,
        id=f"items-{subject}-{first}",
        args={"subject": subject, "first": first, "count": count},
    )
    async with anyio.create_task_group() as tg:
        await tg.start(source.run)
        await wait_until(lambda: source.stats.emitted >= count, timeout=600)
        source.request_stop()


def _handled(group: ScaleOutGroup) -> int:
    return sum(r.stats.handled for rs in group.runtimes.values() for r in rs)


async def _run(group: ScaleOutGroup, items: int) -> float:
    """Seconds until ``group`` has handled ``items`` (a fresh group: its runtimes count)."""
    async with anyio.create_task_group() as tg:
        started = time.perf_counter()
        await tg.start(group.run)
        await wait_until(lambda: _handled(group) >= items, timeout=600, interval=0.01)
        took = time.perf_counter() - started
        group.request_stop()
    return took


async def _restart(fabric: Fabric, subject: str, backlog: int, **kwargs: Any) -> ScaleOutGroup:
    """A group that ran on 100 items, stopped, and is back on ``backlog`` more (not run yet)."""
    actor = _consumer(subject)
    await _run(ScaleOutGroup(actor, fabric, id=subject, partitions=PARTITIONS, **kwargs), 100)
    await _produce(fabric, subject, 101, backlog)
    return ScaleOutGroup(actor, fabric, id=subject, partitions=PARTITIONS, **kwargs)


async def _setup(fabric: Fabric, subject: str, *, partitioned: bool) -> None:
    await fabric.ensure_stream(subject)
    policy = OverloadPolicy.scale_out(max_replicas=PARTITIONS)
    await declare_qos(fabric, subject, QosSpec(max_lag_items=500, policy=policy))
    if partitioned:
        await partition_stream(fabric, subject, PARTITIONS)
    await _produce(fabric, subject, 1, 100)


async def run(report: Report, quick: bool) -> None:
    backlog = 2_000 if quick else 10_000
    with tempfile.TemporaryDirectory() as state:
        async with EmbeddedServer(store_dir=state) as server, Fabric(server.url) as fabric:
            took: dict[str, float] = {}
            groups: dict[str, ScaleOutGroup] = {}
            for name, most in (("fixed", 1), ("elastic", PARTITIONS)):
                subject = f"bench.elastic.{name}"
                await _setup(fabric, subject, partitioned=True)
                groups[name] = await _restart(fabric, subject, backlog, max_replicas=most)
            for name, group in groups.items():
                took[name] = await _run(group, backlog)
            base = report.add(
                Row("baseline", f"catch-up of {backlog:,} at 1 replica", took["fixed"], "s")
            )
            most = max(r for _, r, _ in groups["elastic"].history)
            report.add(
                Row(
                    "elastic",
                    f"catch-up of {backlog:,}, elastic (up to {most} replicas)",
                    took["elastic"],
                    "s",
                    base.name,
                    base.value,
                )
            )
            reads = {}
            for partitioned in (False, True):
                subject = f"bench.elastic.reads{int(partitioned)}"
                await _setup(fabric, subject, partitioned=partitioned)
                group = await _restart(
                    fabric, subject, backlog // 4, max_replicas=PARTITIONS, partitioned=partitioned
                )
                await _run(group, backlog // 4)
                reads[partitioned] = sum(group.deliveries().values()) / (backlog // 4)
            whole = report.add(
                Row("baseline", "deliveries per input item, whole-input reads", reads[False], "x")
            )
            report.add(
                Row(
                    "elastic",
                    "deliveries per input item, partitioned",
                    reads[True],
                    "x",
                    whole.name,
                    whole.value,
                )
            )
