"""Resilient storage against real servers, one per site: round trips, site losses, corruption."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from diaspora.errors import FragmentsMissing, ManifestUnavailable, NotStored, PlacementError
from diaspora.fabric._fragments import FragmentSite
from diaspora.storage import Policy
from tests.storage.rig import corrupt, kill, raw, revive, rig

pytestmark = pytest.mark.anyio

CHUNK = 64 * 1024
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17]


async def pieces(data: bytes, step: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), step):
        yield data[start : start + step]


@pytest.mark.parametrize("layout", ["rep:3", "rs:3+2"])
async def test_round_trips_at_every_size_and_in_streams(tmp_path: Path, layout: str) -> None:
    policy = Policy(layout=layout, small=0, chunk_size=CHUNK, lose=2)
    async with rig(tmp_path, policy) as (_, _, store):
        for size in SIZES:
            data = os.urandom(size)
            manifest = await store.put(f"obj-{size}", data)
            assert manifest.size == size
            assert len(manifest.chunks) == -(-size // CHUNK)
            assert {str(c.layout) for c in manifest.chunks} <= {layout}
            for chunk in manifest.chunks:  # one fragment (or copy) per site: any 2 may go
                assert len({f.site for f in chunk.fragments}) == len(chunk.fragments)
            assert await store.get(f"obj-{size}") == data
        big = os.urandom(8 * 1024 * 1024 + 5)  # 8 MiB default form; 100 MiB in the soak
        await store.put("big", pieces(big, 300_000))  # an async iterator, odd pieces
        assert b"".join([c async for c in store.chunks("big")]) == big
        await store.put("file", io.BytesIO(big[:200_000]))  # a file object
        assert await store.get("file") == big[:200_000]
        assert await store.names() == sorted(["big", "file", *(f"obj-{s}" for s in SIZES)])
        await store.put("big", b"smaller now")  # overwrite: old fragments collected
        assert await store.get("big") == b"smaller now"
        await store.delete("big")
        with pytest.raises(NotStored, match="t/big: no such object"):
            await store.get("big")
        left = {k for s in store.sites.names for k in await store.sites.keys(s)}
        manifests = [await store.stat(n) for n in await store.names()]
        wanted = {f.key for m in manifests for c in m.chunks for f in c.fragments}
        assert left == wanted  # nothing of the overwritten or deleted object remains


@pytest.mark.soak
@pytest.mark.parametrize("layout", ["rep:2", "rs:4+1"])
async def test_a_100_mib_object_round_trips(tmp_path: Path, layout: str) -> None:
    async with rig(tmp_path, Policy(layout=layout, small=0)) as (_, _, store):
        data = os.urandom(100 * 1024 * 1024)
        await store.put("huge", data)
        assert await store.get("huge") == data


async def test_any_m_sites_down_reads_succeed_and_more_name_the_missing(tmp_path: Path) -> None:
    policy = Policy(layout="rs:3+2", small_layout="rep:3", small=CHUNK, chunk_size=CHUNK, lose=2)
    async with rig(tmp_path, policy) as (sites, fabric, store):
        coded, small = os.urandom(3 * CHUNK), os.urandom(1000)
        await store.put("coded", coded)
        await store.put("small", small)  # under `small`: replicated
        assert str((await store.stat("small")).chunks[0].layout) == "rep:3"
        holders = {f.site for f in (await store.stat("coded")).chunks[0].fragments}
        down = sorted(holders - {"hub"})[:2]
        for site in down:
            await kill(sites, site)
        assert await store.get("coded") == coded
        assert await store.get("small") == small
        with pytest.raises(PlacementError, match="sites down"):  # 3 left: rs:3+2 cannot lose 2
            await store.put("refused", os.urandom(3 * CHUNK))
        third = sorted(holders - {"hub", *down})[0]
        await kill(sites, third)  # more than `lose`: the manifest quorum is gone too
        with pytest.raises(ManifestUnavailable, match="needs 3 of the manifest sites") as lost:
            await store.get("coded")
        assert f"not answering: {', '.join(sorted({*down, third}))}" in str(lost.value)
        for site in [*down, third]:
            await revive(sites, site)
            store.sites.health[site].down_until = 0.0
        assert await store.get("coded") == coded
        manifest = await store.stat("coded")
        for fragment in manifest.chunks[0].fragments[:3]:  # more than m fragments gone
            await FragmentSite(fabric, fragment.site, fragment.site, store.bucket).delete(
                fragment.key
            )
        with pytest.raises(FragmentsMissing) as caught:
            await store.get("coded")
        gone = {(c, j, site) for c, j, site, _ in caught.value.missing}
        assert gone == {(0, f.index, f.site) for f in manifest.chunks[0].fragments[:3]}
        assert "missing" in str(caught.value)


async def test_a_flipped_byte_is_detected_never_returned_and_repaired(tmp_path: Path) -> None:
    policy = Policy(layout="rs:3+2", small=0, chunk_size=CHUNK, lose=2)
    async with rig(tmp_path, policy) as (_, fabric, store):
        data = os.urandom(2 * CHUNK)
        manifest = await store.put("x", data)
        chunk = manifest.chunks[0]
        first = store.sites.ranked({f.site for f in chunk.fragments})[0]
        victim = next(f for f in chunk.fragments if f.site == first)  # read on every get
        good = await raw(fabric, store, victim)
        await corrupt(fabric, store, victim, at=100)
        assert await store.get("x") == data  # decoded from intact fragments only
        assert await raw(fabric, store, victim) == good  # and mended on the way
        # a scrub finds what reads do not touch
        other = manifest.chunks[1].fragments[-1]
        await corrupt(fabric, store, other)
        report = await store.repair()
        assert report.rebuilt == 1
        assert report.bytes_written == other.length
        assert await raw(fabric, store, other) is not None
        assert (await store.repair()).rebuilt == 0


async def test_repair_after_a_site_is_replaced_and_moves_off_a_lost_one(tmp_path: Path) -> None:
    policy = Policy(layout="rs:3+1", small=0, chunk_size=CHUNK, lose=1)
    async with rig(tmp_path, policy) as (sites, _, store):
        data = os.urandom(4 * CHUNK)
        manifest = await store.put("x", data)
        on_a = [f for c in manifest.chunks for f in c.fragments if f.site == "a"]
        assert on_a
        await kill(sites, "a", wipe=True)
        await revive(sites, "a")  # back, empty: a replaced site
        store.sites.health["a"].down_until = 0.0
        report = await store.repair()
        assert report.rebuilt == len(on_a)
        assert report.bytes_written == sum(f.length for f in on_a)
        assert report.moved == 0
        # site b lost for good: its fragments rebuilt elsewhere, the manifest switched
        await kill(sites, "b")
        waiting = await store.repair()
        assert waiting.rebuilt == 0
        assert waiting.waiting
        moved = await store.repair(move=True)
        assert moved.moved == len(waiting.waiting)
        after = await store.stat("x")
        assert after.revision > manifest.revision
        assert all(f.site != "b" for c in after.chunks for f in c.fragments)
        await kill(sites, "c")  # and the object still survives one more loss
        assert await store.get("x") == data


async def test_orphans_left_at_a_site_that_was_down_are_swept(tmp_path: Path) -> None:
    policy = Policy(layout="rs:3+1", small=0, chunk_size=CHUNK, lose=1)
    async with rig(tmp_path, policy) as (sites, _, store):
        await store.put("keep", os.urandom(CHUNK))
        gone = await store.put("gone", os.urandom(2 * CHUNK))
        at_a = {f.key for c in gone.chunks for f in c.fragments if f.site == "a"}
        assert at_a
        await kill(sites, "a")
        await store.delete("gone")  # a does not answer: its fragments stay behind
        await revive(sites, "a")
        store.sites.health["a"].down_until = 0.0
        assert at_a <= set(await store.sites.keys("a"))
        assert await store.sweep() == 0  # too young: could be a write in progress
        assert await store.sweep(min_age=0) == len(at_a)
        left = {(s, k) for s in store.sites.names for k in await store.sites.keys(s)}
        keep = await store.stat("keep")
        assert left == {(f.site, f.key) for c in keep.chunks for f in c.fragments}
