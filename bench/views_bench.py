"""Data views: assembling K=16 patterns + 1 reconstruction per tile, by reference vs by copy.

Both sides read the same two source streams on one embedded server, in the
same run: ``ptycho.diff`` (16 patterns of 64 KiB per tile) and
``ptycho.recon`` (one 64 KiB image per tile), published interleaved across
tiles and out of order within a few tiles at a time.

- **assembly**: a view (``View`` run by its actor) against the best join a
  user writes by hand with nats-py: one pull consumer per source, batch
  fetch, a dict of open groups, and the joined sample (17 payloads copied)
  published when a tile is complete. Rows: groups/s and source items/s,
  ratio = view / hand join.
- **bytes published**: the bytes the view's metastream holds (pointer
  records) against the bytes of the hand join's output stream (copies).
- **resolve**: ``ViewItem.load`` (batched direct gets) over every item, MB/s
  of payload, against a plain nats-py pull consumer reading both sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
import msgpack
import nats
import nats.js.errors
import numpy as np
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from bench import raw
from bench.report import Report, Row
from diaspora import Message, codec
from diaspora.errors import FabricUnavailable
from diaspora.fabric import EmbeddedServer, Fabric, read_stored, stream_name
from diaspora.testing import wait_until
from diaspora.views import Source, View, ViewItem, view_runtime

K = 16
DIFF, RECON = "ptycho.diff", "ptycho.recon"
JOINED = "bench.joined"
PATTERN = np.ones((128, 128), dtype=np.float32)  # 64 KiB


@dataclass(frozen=True, slots=True)
class Assembly:
    """One join's run: seconds from start to the last group published, and its output bytes."""

    seconds: float
    groups: int
    items: int
    output_bytes: int


def arrivals(tiles: int, seed: int = 13) -> Iterator[tuple[str, bytes]]:
    """``(subject, payload)`` for every source item: tiles interleaved four at a time, shuffled."""
    rng = random.Random(seed)
    for first in range(0, tiles, 4):
        batch: list[tuple[str, dict[str, object]]] = []
        for tile in range(first, min(first + 4, tiles)):
            batch += [
                (DIFF, {"scan": 0, "tile": tile, "i": i, "pattern": PATTERN}) for i in range(K)
            ]
            batch.append((RECON, {"scan": 0, "tile": tile, "image": PATTERN}))
        rng.shuffle(batch)
        for subject, item in batch:
            yield subject, codec.encode(item)


async def publish_sources(js: JetStreamContext, tiles: int) -> int:
    """Fresh source streams holding every tile's items; the number of items."""
    for subject in (DIFF, RECON):  # allow_direct: what a view's sources get from ensure_stream
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(stream_name(subject))
        await js.add_stream(
            StreamConfig(name=stream_name(subject), subjects=[subject], allow_direct=True)
        )
    pending: list[asyncio.Future[object]] = []
    n = 0
    for subject, payload in arrivals(tiles):
        pending.append(await js.publish_async(subject, payload))  # type: ignore[arg-type]
        n += 1
        if len(pending) >= 256:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    return n


async def hand_join(js: JetStreamContext, tiles: int, batch: int = 64) -> Assembly:
    """The join a user writes with nats-py: a consumer per source, a dict, a copying publish."""
    await raw.fresh_stream(js, "BENCH_JOINED", JOINED)
    open_groups: dict[tuple[int, int], dict[str, list[bytes]]] = {}
    done = asyncio.Event()
    published: list[asyncio.Future[object]] = []
    state = {"groups": 0, "items": 0, "bytes": 0}
    need = {DIFF: K, RECON: 1}

    async def pump(subject: str) -> None:
        sub = await js.pull_subscribe(
            subject,
            durable=None,
            config=ConsumerConfig(
                ack_policy=AckPolicy.ALL,
                deliver_policy=DeliverPolicy.ALL,
                max_ack_pending=batch * 4,
            ),
        )
        try:
            while not done.is_set():
                try:
                    msgs = await sub.fetch(batch, timeout=0.5)
                except nats.errors.TimeoutError:
                    continue
                for m in msgs:
                    state["items"] += 1
                    item = codec.decode(m.data)  # zero-copy: the arrays are views of m.data
                    key = (item["scan"], item["tile"])
                    group = open_groups.setdefault(key, {DIFF: [], RECON: []})
                    group[subject].append(m.data)
                    if all(len(group[s]) >= n for s, n in need.items()):
                        del open_groups[key]
                        sample = msgpack.packb(
                            {
                                "scan": key[0],
                                "tile": key[1],
                                "diff": group[DIFF],
                                "recon": group[RECON],
                            }
                        )
                        state["bytes"] += len(sample)
                        published.append(await js.publish_async(JOINED, sample))  # type: ignore[arg-type]
                        state["groups"] += 1
                        if state["groups"] == tiles:
                            done.set()
                await msgs[-1].ack()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    started = time.perf_counter()
    pumps = [asyncio.ensure_future(pump(s)) for s in (DIFF, RECON)]
    try:
        await asyncio.wait_for(
            done.wait(), 300
        )  # not the pumps: one may sit in a fetch timeout after the last group
        await asyncio.gather(*published)
        seconds = time.perf_counter() - started
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    stored = (await js.stream_info("BENCH_JOINED")).state.bytes
    return Assembly(seconds, state["groups"], state["items"], stored)


async def pull_both(js: JetStreamContext, tiles: int) -> tuple[float, int]:
    """A plain pull consumer reading every source item: seconds and payload bytes."""
    started = time.perf_counter()
    nbytes = 0
    for subject, n in ((DIFF, tiles * K), (RECON, tiles)):
        sub = await js.pull_subscribe(
            subject,
            durable=None,
            config=ConsumerConfig(
                ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL, max_ack_pending=256
            ),
        )
        got = 0
        while got < n:
            msgs = await sub.fetch(min(64, n - got), timeout=10)
            got += len(msgs)
            nbytes += sum(len(m.data) for m in msgs)
            await msgs[-1].ack()
        await sub.unsubscribe()
    return time.perf_counter() - started, nbytes


async def run(report: Report, quick: bool) -> None:
    tiles = 40 if quick else 200
    async with EmbeddedServer() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream(timeout=30)
        await publish_sources(js, tiles)
        hand = await hand_join(js, tiles)
        assert hand.groups == tiles, f"hand join made {hand.groups} groups of {tiles}"
        groups = report.add(
            Row("baseline", "hand join K=16 64KiB groups/s", hand.groups / hand.seconds, "groups/s")
        )
        items = report.add(
            Row("baseline", "hand join K=16 64KiB items/s", hand.items / hand.seconds, "items/s")
        )
        copied = report.add(
            Row("baseline", "hand join bytes published", hand.output_bytes, "bytes")
        )
        seconds, nbytes = await pull_both(js, tiles)
        pull = report.add(
            Row("baseline", "pull consumer of sources MB/s", nbytes / seconds / 1e6, "MB/s")
        )
        await nc.close()
        async with Fabric(server.url, events_stream=False) as fabric:
            view = await view_assembly(fabric, tiles)
            assert view.groups == tiles, f"the view made {view.groups} groups of {tiles}"
            _vs(report, "view K=16 64KiB groups/s", view.groups / view.seconds, "groups/s", groups)
            _vs(report, "view K=16 64KiB items/s", view.items / view.seconds, "items/s", items)
            _vs(report, "view bytes published", view.output_bytes, "bytes", copied)
            seconds, nbytes = await resolve_all(fabric)
            _vs(report, "view item.load() MB/s", nbytes / seconds / 1e6, "MB/s", pull)


def _vs(report: Report, name: str, value: float, unit: str, base: Row) -> None:
    report.add(Row("views", name, value, unit, baseline=base.name, baseline_value=base.value))


VIEW = View(
    "bench",
    output="bench.view",
    key=("scan", "tile"),
    within=600.0,
    sources={"diff": Source(DIFF, count=K), "recon": Source(RECON)},
)


async def view_assembly(fabric: Fabric, tiles: int) -> Assembly:
    """The same pairing by the view actor: from its start to its last item stored."""
    await fabric.ensure_stream(VIEW.output)
    runtime = view_runtime(VIEW, fabric)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)

        async def done() -> bool:
            try:
                return (await fabric.stream_bounds(VIEW.output))[1] >= tiles
            except (FabricUnavailable, nats.errors.TimeoutError):
                return False  # the server is busy feeding the view: ask again

        await wait_until(done, timeout=600, interval=0.005)
        seconds = time.perf_counter() - started
        runtime.request_stop()
    info = await fabric.js.stream_info(stream_name(VIEW.output))
    return Assembly(seconds, info.state.messages, tiles * (K + 1), info.state.bytes)


async def resolve_all(fabric: Fabric) -> tuple[float, int]:
    """``ViewItem.load`` of every item of the view, one after another: seconds, payload bytes."""
    stored = [m async for m in read_stored(fabric, VIEW.output)]
    started = time.perf_counter()
    nbytes = 0
    for m in stored:
        msg = Message(
            data=codec.decode(m.payload), subject=VIEW.output, seq=m.seq, headers=m.headers
        )
        sample = await ViewItem.of(msg).load(fabric)
        nbytes += sum(len(part.payload) for parts in sample.values() for part in parts)  # type: ignore[union-attr]
    return time.perf_counter() - started, nbytes
