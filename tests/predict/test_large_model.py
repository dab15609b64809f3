"""A monitor whose model state is larger than a checkpoint record may hold (the server's
max_payload) keeps it in the object store, through the actor's large-state path, and a
restarted monitor resumes from it with the same scores."""

from __future__ import annotations

import importlib.util
import math

import anyio
import pytest

from diaspora import codec
from diaspora.actor import CheckpointSlot
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.predict import MonitorSpec, Track, monitor_runtime
from diaspora.testing import read_stream, wait_until

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        importlib.util.find_spec("torch") is None
        or importlib.util.find_spec("pytorch_lightning") is None,
        reason="torch and pytorch-lightning are not installed (extra 'ml')",
    ),
]

SMALL = 256 * 1024  # the server's max_payload: a KV record holds at most this (the state: ~420 KB)
SPEC = MonitorSpec.from_mapping({
    "name": "big", "on": "big.xs", "value": "v", "time": "t", "scores": "big.scores",
    "model": {
        "kind": "lstm", "window": 12, "hidden": 160, "first_train": 200, "train_size": 200,
        "retrain_every": 30, "swap_after": 20, "epochs": 2, "errors": 100,
    },
})  # fmt: skip


def values(n: int) -> list[dict[str, float]]:
    return [{"t": float(i), "v": 10.0 + 3.0 * math.sin(2 * math.pi * i / 25)} for i in range(n)]


async def scores(fabric: Fabric) -> list[float]:
    return [m.data["score"] for m in await read_stream(fabric, "big.scores", missing_ok=True)]


async def test_an_lstm_monitor_larger_than_a_record_restores_from_the_object_store() -> None:
    items = values(270)
    track = Track(SPEC)
    expected = [s.score for item in items for s in track.add(item["t"], item["v"])]
    cut = 235  # trained at 200, training again (since 230) when the monitor stops
    async with EmbeddedServer(max_payload=SMALL) as server, Fabric(server.url) as fabric:
        assert fabric.inline_limit <= SMALL
        await fabric.ensure_stream("big.xs")
        await fabric.ensure_stream("big.scores")
        for item in items[:cut]:
            await fabric.publish("big.xs", item)
        first = monitor_runtime(SPEC, fabric)
        async with anyio.create_task_group() as tg:
            await tg.start(first.run)
            await wait_until(lambda: _count(fabric, cut), timeout=120, what=f"{cut} scores")
            first.request_stop()  # its final checkpoint: the model, mid-training
        record = await CheckpointSlot.peek(fabric, "monitor-big", state=True)
        assert record is not None
        assert record.state_ref is not None  # not inline: in the object store
        assert record.state_ref.startswith("diaspora-checkpoints/")
        assert len(codec.encode(record.state)) > SMALL
        (model,) = [t["model"] for t in record.state["tracks"].values()]
        assert model["training"] is not None
        for item in items[cut:]:
            await fabric.publish("big.xs", item)
        again = monitor_runtime(SPEC, fabric)
        async with anyio.create_task_group() as tg:
            await tg.start(again.run)
            await wait_until(lambda: _count(fabric, len(items)), timeout=120, what="all scores")
            again.request_stop()
        assert await scores(fabric) == expected  # no gap, no repeat, the same scores


async def _count(fabric: Fabric, n: int) -> bool:
    return len(await scores(fabric)) >= n
