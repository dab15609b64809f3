"""Manifests at 2 * lose + 1 sites: the first manifest site killed, reads and writes go on, and
no acknowledged put is lost (real servers, one per site)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diaspora.errors import ManifestUnavailable, NotStored
from diaspora.storage import Policy
from tests.storage.rig import kill, revive, rig

pytestmark = pytest.mark.anyio

CHUNK = 32 * 1024
POLICY = Policy(layout="rs:2+1", small=0, chunk_size=CHUNK, lose=1)


async def test_the_manifest_site_killed_reads_and_writes_go_on(tmp_path: Path) -> None:
    async with rig(tmp_path, POLICY, meta="a") as (sites, _, store):
        assert store.manifests.sites == ["a", "b", "c"]
        old, new = os.urandom(2 * CHUNK + 1), os.urandom(CHUNK + 7)
        await store.put("x", old)
        await store.put("gone", b"bye")
        await kill(sites, "a")  # the bucket's `meta` site
        assert await store.get("x") == old
        await store.put("x", new)  # acknowledged by b and c
        await store.put("y", b"written with a down")
        await store.delete("gone")
        assert await store.names() == ["x", "y"]
        await revive(sites, "a")  # back with the old manifests
        store.sites.health["a"].down_until = 0.0
        await kill(sites, "b")  # a (stale) and c answer: the newest is c's
        assert await store.get("x") == new
        assert await store.get("y") == b"written with a down"
        with pytest.raises(NotStored):
            await store.stat("gone")
        await revive(sites, "b")
        store.sites.health["b"].down_until = 0.0
        report = await store.repair()
        assert report.manifests >= 1  # a's stale copies brought up to date
        assert (await store.repair()).manifests == 0
        await kill(sites, "c")
        await kill(sites, "b")  # more than `lose` manifest sites: a clear error
        with pytest.raises(ManifestUnavailable) as caught:
            await store.get("x")
        message = str(caught.value)
        assert "manifest sites a, b, c" in message
        assert "not answering: b, c" in message
        assert "bring 1 of them back" in message
        with pytest.raises(ManifestUnavailable):
            await store.put("z", b"z")
