"""Reads from the fastest sites, and layouts that follow reads and link speed (link proxy)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diaspora.storage import Policy
from tests.storage.rig import rig

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024


async def test_reads_go_to_the_fastest_sites_and_skip_a_slow_one(tmp_path: Path) -> None:
    policy = Policy(layout="rs:3+2", small=0, chunk_size=CHUNK, lose=2)
    async with rig(tmp_path, policy, proxied=("a",)) as (sites, _, store):
        data = os.urandom(4 * CHUNK)
        await store.put("x", data)
        proxy = sites["a"].proxy
        assert proxy is not None
        proxy.set_latency(0.25)  # a's link slows: 4 of 5 fragments are asked, 3 used
        for _ in range(8):
            assert await store.get("x") == data
        assert store.sites.ranked()[-1] == "a"
        before = store.sites.health["a"].asked
        for _ in range(3):
            assert await store.get("x") == data
        assert store.sites.health["a"].asked == before  # no longer asked at all


async def test_a_bandwidth_drop_moves_hot_chunks_to_replicas_near_readers(tmp_path: Path) -> None:
    policy = Policy(
        layout="rs:3+2",
        small=0,
        chunk_size=CHUNK,
        lose=2,
        hot_reads=2,
        latency_target=0.1,
        relayout_share=0.25,
    )
    async with rig(tmp_path, policy, proxied=("a",)) as (sites, _, store):
        data = os.urandom(6 * CHUNK)
        await store.put("x", data)
        for _ in range(2):
            assert await store.get("x") == data
        calm = await store.adapt()  # hot, but every link within the target: nothing moves
        assert calm.slow == []
        assert calm.changed == []
        proxy = sites["a"].proxy
        assert proxy is not None
        proxy.set_bandwidth(300_000)  # a's link drops to 300 kB/s
        for _ in range(2):
            async for _chunk in store.chunks("x"):
                break  # chunks 0-3 (one read-ahead window) are read: the hot ones
        report = await store.adapt()
        assert report.slow == ["a"]
        moved = {i for _, i, _, new in report.changed if new == "rep:3"}
        assert moved == {0, 1, 2, 3}
        manifest = await store.stat("x")
        assert [str(c.layout) for c in manifest.chunks] == ["rep:3"] * 4 + ["rs:3+2"] * 2
        for chunk in manifest.chunks[:4]:
            assert "a" not in {f.site for f in chunk.fragments}
            assert chunk.fragments[0].site == "hub"  # the reader's site first
        assert report.rate_limit is not None
        assert report.bytes_moved <= report.rate_limit * report.seconds * 1.05
        assert await store.get("x") == data
        left = {k for s in store.sites.names for k in await store.sites.keys(s)} - {"probe.0"}
        assert left == {f.key for c in manifest.chunks for f in c.fragments}  # old collected
        cold = await store.adapt()  # no reads since: back to the compact code
        assert {new for *_, new in cold.changed} == {"rs:3+2"}
        assert await store.get("x") == data
