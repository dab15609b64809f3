"""Storage publishes typed events on the fabric: a re-layout, a corrupt fragment and its repair,
a repair pass, a degraded read and a site that stopped answering (real servers, one per site)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nats
import pytest

from diaspora import codec
from diaspora.events import (
    DegradedRead,
    Event,
    FragmentCorrupt,
    FragmentRepaired,
    Relayout,
    RepairDone,
    SiteUnreachable,
    decode_record,
)
from diaspora.storage import Policy
from diaspora.testing import wait_until
from tests.storage.rig import corrupt, kill, rig

pytestmark = pytest.mark.anyio

CHUNK = 32 * 1024


def policy(layout: str) -> Policy:
    return Policy(layout=layout, small=0, chunk_size=CHUNK, lose=1)


async def test_relayout_repair_and_degraded_reads_publish_their_events(tmp_path: Path) -> None:
    got: list[Event] = []

    async def collect(msg: Any) -> None:
        got.append(decode_record(codec.decode(msg.data)))

    def of(kind: type[Event]) -> list[Any]:
        return [e for e in got if isinstance(e, kind)]

    async with rig(tmp_path, policy("rep:2"), bucket="ev") as (sites, fabric, store):
        plain = await nats.connect(fabric.urls[0])  # a client that knows nothing of diaspora
        try:
            await plain.subscribe("diaspora.events.storage.ev.>", cb=collect)
            await plain.flush()
            data = os.urandom(2 * CHUNK)
            await store.put("obj", data)

            chunk = (await store.stat("obj")).chunks[1]
            first = store.sites.ranked({f.site for f in chunk.fragments})[0]
            bad = next(f for f in chunk.fragments if f.site == first)  # the copy read first
            await corrupt(fabric, store, bad)
            assert await store.get("obj") == data  # read around it, and mended
            await wait_until(lambda: bool(of(FragmentRepaired)), timeout=10, what="mended")
            assert f"{bad.index}@{first}: corrupt" in of(DegradedRead)[0].why
            where = ("obj", 1, bad.index, first)
            assert [(e.object, e.chunk, e.fragment, e.site) for e in of(FragmentCorrupt)] == [where]
            mended = [(e.object, e.chunk, e.fragment, e.site, e.how) for e in of(FragmentRepaired)]
            assert mended == [(*where, "mended")]
            got.clear()

            store.policy = policy("rs:2+1")
            report = await store.adapt()  # every chunk to the policy's new layout
            assert len(report.changed) == 2
            await wait_until(lambda: len(of(Relayout)) == 2, timeout=10, what="re-layouts")
            moves = sorted((e.object, e.chunk, e.old, e.new, e.reason) for e in of(Relayout))
            assert moves == [
                ("obj", 0, "rep:2", "rs:2+1", "policy"),
                ("obj", 1, "rep:2", "rs:2+1", "policy"),
            ]
            assert all(e.moved_bytes > CHUNK for e in of(Relayout))

            victim_chunk = (await store.stat("obj")).chunks[1]
            victim = victim_chunk.fragments[0]
            await corrupt(fabric, store, victim)
            repaired = await store.repair()
            assert repaired.rebuilt == 1
            await wait_until(lambda: bool(of(RepairDone)), timeout=10, what="repair done")
            (done,) = of(RepairDone)
            assert (done.rebuilt, done.lost, done.bytes_written) == (1, 0, victim.length)
            where = ("obj", 1, victim.index, victim.site)
            assert [(e.object, e.chunk, e.fragment, e.site) for e in of(FragmentCorrupt)] == [where]
            rebuilt = [(e.object, e.chunk, e.fragment, e.site, e.how) for e in of(FragmentRepaired)]
            assert rebuilt == [(*where, "rebuilt")]

            down = next(f.site for f in victim_chunk.fragments if f.site != "hub")
            await kill(sites, down)
            assert (await store.repair()).waiting  # its fragments wait for it
            await wait_until(lambda: bool(of(SiteUnreachable)), timeout=10, what="unreachable")
            assert {e.site for e in of(SiteUnreachable)} == {down}
            await wait_until(lambda: len(of(RepairDone)) == 2, timeout=10, what="second repair")
            assert of(RepairDone)[1].waiting > 0
        finally:
            await plain.close()
