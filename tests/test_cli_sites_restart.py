"""Three sites edge → hpc → cloud under ``diaspora run`` with a site's nats-server restarted
mid-stream: the hub's (hpc) and the edge's. The test runs the three servers itself (fixed
ports and stores, each site given by ``url`` in the tree file), stops one for real and starts
it again on the same ports and store while an edge producer publishes at 1,000 msg/s: the
cloud archive ends with every sum once, in order, and the resume and drain times are printed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from diaspora.fabric import EmbeddedServer, Fabric, Sites, SiteSpec
from diaspora.testing import read_stream, wait_until
from tests.test_cli_run import diaspora_run
from tests.test_cli_sites import THREE_SITES

pytestmark = pytest.mark.anyio

#: THREE_SITES' bridges and tree (edge producer, hpc sum, cloud archive) ...
_TREE = THREE_SITES[THREE_SITES.index("[[bridges]]") :]
#: ... on servers the test owns, so that it can restart one
URL_SITES = """
[sites.edge]
url = "{edge}"
domain = "edge"
parent = "hpc"
[sites.hpc]
url = "{hpc}"
leaf_url = "{hpc_leaf}"
domain = "hpc"
parent = "cloud"
[sites.cloud]
url = "{cloud}"
leaf_url = "{cloud_leaf}"
domain = "cloud"

"""


def _tree(sites: Sites) -> str:
    return (
        URL_SITES.format(
            edge=sites["edge"].url,
            hpc=sites["hpc"].url,
            hpc_leaf=sites["hpc"].leaf_url,
            cloud=sites["cloud"].url,
            cloud_leaf=sites["cloud"].leaf_url,
        )
        + _TREE
    )


#: what would show an actor did not ride through the restart, or a hole in a bridged copy
BAD_EVENTS = (".crashed", ".exited", ".restarted", ".lost", ".gap")

SPECS = (
    SiteSpec("edge", domain="edge", parent="hpc"),
    SiteSpec("hpc", domain="hpc", parent="cloud"),
    SiteSpec("cloud", domain="cloud"),
)


@pytest.mark.parametrize(
    "down", [pytest.param(3.0, id="3s"), pytest.param(25.0, id="25s", marks=pytest.mark.soak)]
)
@pytest.mark.parametrize("which", ["hpc", "edge"])
async def test_edge_to_hpc_to_cloud_through_a_site_server_restart_nothing_lost_or_duplicated(
    tmp_path: Path, which: str, down: float
) -> None:
    async with Sites(SPECS, state_dir=tmp_path / "servers") as sites:
        (tmp_path / "tree.toml").write_text(_tree(sites))
        server = sites[which].server
        assert server is not None
        with diaspora_run(tmp_path, "tree.toml", "--json", "--every", "60", "--ephemeral") as run:
            await run.wait_for(r'"status": "running"', stdout=True)
            lines = [json.loads(line) for line in run.out().splitlines()]
            assert [li["direction"] for li in lines if li["status"] == "bridged"] == ["up", "up"]
            n = int((down + 2) * 1000)
            async with (
                Fabric(sites["edge"].url, name="producer") as edge,
                Fabric(sites["cloud"].url, name="reader") as cloud,
            ):
                resumed, drained, before = await _restart_while_producing(
                    edge, cloud, server, n=n, down=down
                )
                print(
                    f"{which} server restarted ({down}s down), {n} msgs at 1000 msg/s: the cloud "
                    f"archive moved again {resumed:.2f}s and had every sum {drained:.2f}s after "
                    f"the server was back ({before} before)"
                )
            async with Fabric(sites["hpc"].url, name="events") as hpc:  # the root's site
                events = await read_stream(hpc, "diaspora.events.>", stream="DIASPORA_EVENTS")
                kinds = [m.subject for m in events]
            # the actors on the restarted server rode through it: reconnected, not restarted
            for actor in ("root_sum", "root_archive"):
                assert kinds.count(f"diaspora.events.actor.{actor}.started") == 1, kinds
            assert not [k for k in kinds if k.endswith(BAD_EVENTS)], kinds
            assert await run.stop() == 0, run.err()


async def _restart_while_producing(
    edge: Fabric, cloud: Fabric, server: EmbeddedServer, *, n: int, down: float
) -> tuple[float, float, int]:
    """Publish ``n`` numbers at 1,000 msg/s on the edge, stopping ``server`` for ``down`` s
    0.5 s in; return the seconds from its restart to the archive's first new sum and to its
    last, and how many sums the archive had at the restart. Checks every sum, once, in order."""
    rate = 1000.0

    async def produce() -> None:  # an instrument: a publish it could not land is sent again
        start = time.monotonic()
        for i in range(1, n + 1):
            await edge.publish("edge.numbers", {"x": 1}, msg_id=f"in-{i}", timeout=down + 30)
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                await anyio.sleep(ahead)

    async def archive() -> list[int]:
        found = await read_stream(cloud, "cloud.archive", missing_ok=True)
        return [m.data["total"] for m in found]

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        await anyio.sleep(0.5)
        await server.stop()
        await anyio.sleep(down)
        await server.start()
        back = time.monotonic()
        before = len(await archive())
        await wait_until(
            lambda: _archived(archive, before + 1), timeout=120, what="the archive moving"
        )
        resumed = time.monotonic() - back
    await wait_until(lambda: _archived(archive, n), timeout=120, what=f"{n} sums archived")
    drained = time.monotonic() - back
    assert await archive() == list(range(1, n + 1)), "lost, duplicated or reordered"
    return resumed, drained, before


async def _archived(archive, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await archive()) >= n
