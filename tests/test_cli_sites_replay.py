"""``diaspora run`` with an edge producer keeping history, a bridge edge → hpc too small for a cut,
and an hpc consumer: the hole is reported lost by the bridge and filled from the history."""

from __future__ import annotations

from pathlib import Path

import pytest

from diaspora.fabric import Fabric, link_fault
from diaspora.testing import read_stream, wait_until
from tests.sites_rig import TWO_SITES, site_lines
from tests.test_cli_run import diaspora_run

pytestmark = pytest.mark.anyio

TREE = (
    TWO_SITES
    + """
[[bridges]]
subject = "edge.readings"
from = "edge"
to = "hpc"

[streams."edge.readings"]
limits = { max_msgs = 50 }         # too small for the cut below

[supervisor]
site = "hpc"
[[supervisor.children]]
id = "instrument"
site = "edge"
actor = "tests.cli_replay_actors:Instrument"
[[supervisor.children]]
id = "ledger"
actor = "tests.cli_replay_actors:Ledger"
"""
)


async def _events(fabric: Fabric, kind: str) -> list[dict[str, object]] | None:
    try:
        found = await read_stream(
            fabric, f"diaspora.events.actor.*.{kind}", stream="DIASPORA_EVENTS", missing_ok=True
        )
    except TimeoutError:  # a busy server: ask again
        return None
    return [m.data for m in found if m.data]


async def test_a_hole_an_overflowing_edge_copied_is_filled_at_hpc_from_the_producers_history(
    tmp_path: Path,
) -> None:
    (tmp_path / "tree.toml").write_text(TREE)
    with diaspora_run(
        tmp_path, "tree.toml", "--json", "--every", "60", "--link-proxy", "--ephemeral"
    ) as run:
        _, urls = await site_lines(run)
        async with Fabric(urls["edge"]) as edge, Fabric(urls["hpc"]) as hpc:

            async def ledger() -> list[dict[str, object]]:
                return [m.data for m in await read_stream(hpc, "hpc.ledger", missing_ok=True)]

            async def has(n: int) -> bool:
                return len(await ledger()) >= n

            for x in range(1, 11):
                await edge.publish("edge.triggers", {"x": x}, msg_id=f"t-{x}")
            await wait_until(lambda: has(10), timeout=60, what="10 readings at hpc")
            await link_fault(edge, "edge", "cut", seconds=3)
            for x in range(11, 211):  # while cut off: the edge keeps the last 50 readings
                await edge.publish("edge.triggers", {"x": x}, msg_id=f"t-{x}")
            await wait_until(lambda: has(210), timeout=90, what="210 readings at hpc")
            out = await ledger()
            assert [o["x"] for o in out] == list(range(1, 211)), "lost, duplicated, reordered"
            assert [o["item"] for o in out if o["replayed"]] == list(range(11, 161))

            async def reported() -> bool:
                lost, replayed = await _events(hpc, "lost"), await _events(hpc, "replayed")
                if lost is None or replayed is None:
                    return False
                holes = [(e["first"], e["last"], e["by"]) for e in lost]
                filled = [(e["first"], e["last"], e["producer"]) for e in replayed]
                return holes == [(11, 160, "origin")] and filled == [(11, 160, "root.instrument")]

            await wait_until(reported, timeout=30, what="the hole reported, then filled")
        assert await run.stop() == 0
