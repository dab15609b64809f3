"""The ptychography workload of issue 13: K=16 diffraction patterns + 1 reconstruction per
tile, published out of order and interleaved across tiles; and the checks on its view."""

from __future__ import annotations

import random
from typing import Any

import anyio

from diaspora.fabric import Fabric
from diaspora.fabric._naming import stream_name
from diaspora.testing._streams import read_stream
from diaspora.views import Source, View

K = 16
TILES = 500


def ptycho_view(name: str = "ptycho_train", *, within: float = 600.0, **kwargs: Any) -> View:
    return View(
        name,
        output=f"views.{name}",
        key=("scan", "tile"),
        within=within,
        sources={
            "diff": Source("ptycho.diff", count=K),
            "recon": Source("ptycho.recon", count=1),
        },
        **kwargs,
    )


def arrival_order(tiles: int, seed: int = 13, block: int = 25) -> list[tuple[str, int, int]]:
    """(source, tile, position) in a shuffled order: patterns out of order within a tile,
    ``block`` tiles interleaved at a time (so tiles complete as the scan goes on), a
    tile's reconstruction anywhere among its patterns."""
    rng = random.Random(seed)
    order: list[tuple[str, int, int]] = []
    for first in range(0, tiles, block):
        chunk = [("diff", t, p) for t in range(first, min(tiles, first + block)) for p in range(K)]
        chunk += [("recon", t, 0) for t in range(first, min(tiles, first + block))]
        rng.shuffle(chunk)
        order += chunk
    return order


async def publish_tiles(
    fabric: Fabric, order: list[tuple[str, int, int]], *, start: int = 0, stop: int | None = None
) -> dict[tuple[str, int, int], int]:
    """Publish ``order[start:stop]`` (message ids make a repeat harmless); item -> stream seq."""
    seqs: dict[tuple[str, int, int], int] = {}
    chunk = order[start:stop]

    async def one(entry: tuple[str, int, int]) -> None:
        source, tile, pos = entry
        subject = f"ptycho.{source}"
        data = {"scan": 1, "tile": tile, "pos": pos}
        ack = await fabric.publish(subject, data, msg_id=f"{source}:{tile}:{pos}", timeout=20)
        seqs[entry] = ack.seq

    for i in range(0, len(chunk), 64):  # 64 in flight; per-stream order is publish order
        async with anyio.create_task_group() as tg:
            for entry in chunk[i : i + 64]:
                tg.start_soon(one, entry)
    return seqs


async def check_items(
    fabric: Fabric, view: View, seqs: dict[tuple[str, int, int], int], tiles: int
) -> None:
    """Exactly ``tiles`` items, each with its tile's 16 patterns and 1 reconstruction."""
    items = await read_stream(fabric, view.output)
    keys = [tuple(m.data["key"]) for m in items]
    assert len(keys) == len(set(keys)), "a group was emitted twice"
    assert sorted(keys) == [(1, t) for t in range(tiles)]
    for m in items:
        _, tile = m.data["key"]
        assert m.data["complete"] is True
        assert m.data["generation"] == 0
        refs = m.data["refs"]
        diff = sorted(r[1] for r in refs["diff"])
        assert diff == sorted(seqs[("diff", tile, p)] for p in range(K))
        assert all(r[0] == stream_name("ptycho.diff") and r[3] == "" for r in refs["diff"])
        assert [r[1] for r in refs["recon"]] == [seqs[("recon", tile, 0)]]
