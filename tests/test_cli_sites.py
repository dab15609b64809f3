"""Sites in a workflow file: ``[sites.<name>]``, each child's ``site``, and ``diaspora run``
starting one embedded server per site, linked by leaf connections, every actor on its site."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

from diaspora.errors import ConfigError
from diaspora.fabric import Fabric
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import parse_config
from tests.sites_rig import EDGE_SUM, TWO_SITES, site_lines
from tests.test_cli_run import diaspora_run

pytestmark = pytest.mark.anyio

TREE = (
    TWO_SITES
    + EDGE_SUM
    + """
[[supervisor.children]]
id = "hpcsum"
actor = "actors.examples:RunningSum"
args = { to = "hpc.sums" }
inputs = ["hpc.numbers"]
"""
)


def test_each_child_takes_its_site_or_its_parents() -> None:
    config = parse_config(TREE, source="t.toml")
    assert [s.name for s in config.sites] == ["edge", "hpc"]
    assert config.site_of("root") == "hpc"
    assert config.site_of("root.edgesum") == "edge"
    assert config.site_of("root.hpcsum") == "hpc"
    assert config.subject_sites() == {"edge.numbers": "edge", "hpc.numbers": "hpc"}


def test_the_root_defaults_to_the_first_site() -> None:
    config = parse_config(TWO_SITES + "[supervisor]\n", source="t.toml")
    assert config.site_of("root") == "edge"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            TWO_SITES + '[supervisor]\nsite = "cloud"\n',
            "t.toml: supervisor.site: 'cloud' is not a declared site (edge, hpc)",
        ),
        (
            '[supervisor]\n[[supervisor.children]]\nid = "a"\nsite = "edge"\nchildren = []\n',
            "t.toml: supervisor.children[0].site: 'edge' is not a declared site (none",
        ),
        (
            '[sites.edge]\ndomain = "edge"\nparent = "hpc"\n[supervisor]\n',
            "t.toml: sites.edge.parent",
        ),
        (
            '[sites.a]\ndomain = "x"\n[sites.b]\ndomain = "x"\n[supervisor]\n',
            "t.toml: sites.b.domain",
        ),
        ('[sites.a]\nparent = "b"\n[supervisor]\n', "t.toml: sites.a: missing required key"),
        (
            TWO_SITES + '[fabric]\nurl = "nats://127.0.0.1:4222"\n[supervisor]\n',
            "t.toml: fabric.url: with [sites], give each site its own url",
        ),
        (
            TWO_SITES
            + """[supervisor]
[[supervisor.children]]
id = "a"
site = "edge"
actor = "actors.examples:RunningSum"
[[supervisor.children]]
id = "b"
site = "hpc"
actor = "actors.examples:RunningSum"
""",
            "t.toml: actor 'root.b' on site 'hpc' reads 'numbers', which actor 'root.a' reads "
            "on site 'edge'",
        ),
        (
            TWO_SITES
            + """[supervisor]
[[supervisor.children]]
id = "node"
site = "edge"
process = true
children = [{ id = "a", site = "hpc", actor = "actors.examples:RunningSum" }]
""",
            "t.toml: supervisor.children[0].children[0].site: 'hpc' inside process node "
            "'root.node', which runs on site 'edge'",
        ),
    ],
)
def test_a_bad_site_setup_names_the_file_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="t.toml")
    assert str(caught.value).startswith(message), str(caught.value)


async def test_diaspora_run_starts_one_server_per_site_and_places_each_actor(
    tmp_path: Path,
) -> None:
    (tmp_path / "tree.toml").write_text(TREE)
    with diaspora_run(tmp_path, "tree.toml", "--json", "--every", "60") as run:
        lines, urls = await site_lines(run)
        assert set(urls) == {"edge", "hpc"}
        domains = {line["site"]: line["domain"] for line in lines if line.get("site")}
        assert domains == {"edge": "edge", "hpc": "hpc"}
        async with Fabric(urls["edge"]) as edge, Fabric(urls["hpc"]) as hpc:
            for x in (1, 2, 3):
                await edge.publish("edge.numbers", {"x": x})
                await hpc.publish("hpc.numbers", {"x": 10 * x})

            async def sums(fabric: Fabric, subject: str) -> list[int]:
                found = await read_stream(fabric, subject, missing_ok=True)
                return [m.data["total"] for m in found]

            async def both_done() -> bool:
                return await sums(edge, "edge.sums") == [1, 3, 6] and await sums(
                    hpc, "hpc.sums"
                ) == [10, 30, 60]

            await wait_until(both_done, timeout=60, what="each site's sums")
            # each input stream lives in its own site's domain only (no copy in the other)
            assert await edge.stream_bounds("edge.numbers") == (1, 3)
            assert await hpc.stream_bounds("hpc.numbers") == (1, 3)
            assert await hpc.stream_bounds("edge.numbers", domain="edge") == (1, 3)
            with pytest.raises(Exception, match="no stream"):
                await hpc.stream_bounds("edge.numbers")
        assert await run.stop() == 0
    assert (tmp_path / ".diaspora" / "sites" / "edge" / "jetstream").is_dir()
    assert (tmp_path / ".diaspora" / "sites" / "hpc" / "jetstream").is_dir()


async def test_link_proxies_on_the_uplinks_obey_fault_orders_and_the_edge_keeps_working(
    tmp_path: Path,
) -> None:
    from diaspora.fabric import link_fault
    from diaspora.fabric._jsapi import info_subject

    (tmp_path / "tree.toml").write_text(TREE)
    with diaspora_run(
        tmp_path, "tree.toml", "--json", "--every", "60", "--link-proxy", "--ephemeral"
    ) as run:
        lines, urls = await site_lines(run)
        edge_line = next(line for line in lines if line.get("site") == "edge")
        assert edge_line["link_control"] == "diaspora.control.link.edge.fault"
        assert next(li for li in lines if li.get("site") == "hpc")["link_control"] is None
        async with Fabric(urls["edge"]) as edge, Fabric(urls["hpc"]) as hpc:

            async def hpc_reaches_edge() -> bool:
                try:
                    await hpc.request(info_subject("edge"), b"", timeout=0.5)
                except Exception:
                    return False
                return True

            assert await hpc_reaches_edge()
            reply = await link_fault(edge, "edge", "cut", seconds=4)
            assert reply["ok"]
            assert reply["fault"] == "cut_link"
            await wait_until(
                lambda: _not(hpc_reaches_edge), timeout=10, what="the edge cut off from hpc"
            )
            for x in (1, 2):  # the edge works on its own while cut off
                await edge.publish("edge.numbers", {"x": x})

            async def edge_sums() -> list[int]:
                found = await read_stream(edge, "edge.sums", missing_ok=True)
                return [m.data["total"] for m in found]

            async def summed() -> bool:
                return await edge_sums() == [1, 3]

            await wait_until(summed, timeout=30, what="edge sums while cut off")
            await wait_until(hpc_reaches_edge, timeout=30, what="the link back after the cut")
        assert await run.stop() == 0


async def _not(probe) -> bool:  # type: ignore[no-untyped-def]
    return not await probe()


THREE_SITES = """
[sites.edge]
domain = "edge"
parent = "hpc"
[sites.hpc]
domain = "hpc"
parent = "cloud"
[sites.cloud]
domain = "cloud"

[[bridges]]
subject = "edge.numbers"
from = "edge"
to = "hpc"
[[bridges]]
subject = "hpc.sums"
from = "hpc"
to = "cloud"

[supervisor]
site = "hpc"
[[supervisor.children]]
id = "sum"
actor = "actors.examples:RunningSum"
args = { to = "hpc.sums" }
inputs = ["edge.numbers"]
[[supervisor.children]]
id = "archive"
site = "cloud"
actor = "actors.examples:Archive"
args = { to = "cloud.archive" }
inputs = ["hpc.sums"]
"""


def test_bridges_join_readers_on_two_sites_and_are_checked() -> None:
    config = parse_config(THREE_SITES, source="t.toml")
    assert config.subject_sites() == {"edge.numbers": "edge", "hpc.sums": "hpc"}
    up = config.bridges[0].bridge(config.sites)
    assert (up.from_domain, up.to_domain, str(up.direction)) == ("edge", "hpc", "up")
    down = THREE_SITES.replace('from = "hpc"\nto = "cloud"', 'from = "hpc"\nto = "edge"')
    down = down.replace('site = "cloud"\nactor', 'site = "edge"\nactor')
    mirror = parse_config(down, source="t")
    assert str(mirror.bridges[1].bridge(mirror.sites).direction) == "down"
    # a second reader on a site the stream is not bridged to
    extra = '[[supervisor.children]]\nid = "late"\nsite = "edge"\n'
    extra += 'actor = "actors.examples:Archive"\ninputs = ["hpc.sums"]\n'
    with pytest.raises(ConfigError, match=r"'root.late' on site 'edge' reads 'hpc.sums'"):
        parse_config(THREE_SITES + extra, source="t.toml")
    for old, new, message in [
        ('to = "cloud"\n\n[supervisor]', 'to = "moon"\n\n[supervisor]', "'moon' is not a declared"),
        ('from = "hpc"\nto = "cloud"', 'from = "hpc"\nto = "hpc"', "'hpc' is the origin too"),
    ]:
        assert old in THREE_SITES
        with pytest.raises(ConfigError, match=re.escape(f"t.toml: bridges[1].to: {message}")):
            parse_config(THREE_SITES.replace(old, new), source="t.toml")
    with pytest.raises(ConfigError, match=r"t: bridges: a bridge joins two sites"):
        parse_config('[[bridges]]\nsubject = "x"\nfrom = "a"\nto = "b"\n[supervisor]\n', source="t")


@pytest.mark.parametrize(
    "cut", [pytest.param(3.0, id="3s"), pytest.param(25.0, id="25s", marks=pytest.mark.soak)]
)
async def test_edge_to_hpc_to_cloud_through_a_cut_uplink_nothing_lost_or_duplicated(
    tmp_path: Path, cut: float
) -> None:
    import time

    import anyio

    from diaspora.fabric import link_fault

    (tmp_path / "tree.toml").write_text(THREE_SITES)
    with diaspora_run(
        tmp_path, "tree.toml", "--json", "--every", "60", "--link-proxy", "--ephemeral"
    ) as run:
        lines, urls = await site_lines(run)
        assert [li["direction"] for li in lines if li["status"] == "bridged"] == ["up", "up"]
        n, rate = int(2 * cut * 1000 / 2), 1000.0
        async with Fabric(urls["edge"]) as edge, Fabric(urls["cloud"]) as cloud:
            published = 0
            restored_at = 0.0

            async def produce() -> None:  # the edge producer, about 1,000 msg/s
                nonlocal published
                start = time.monotonic()
                for i in range(1, n + 1):
                    await edge.publish("edge.numbers", {"x": 1}, msg_id=f"in-{i}")
                    published = i
                    ahead = start + i / rate - time.monotonic()
                    if ahead > 0:
                        await anyio.sleep(ahead)

            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                await anyio.sleep(0.5)
                await link_fault(edge, "edge", "cut", seconds=cut)
                await anyio.sleep(cut)
                restored_at = time.monotonic()

            async def archive() -> list[int]:
                found = await read_stream(cloud, "cloud.archive", missing_ok=True)
                return [m.data["total"] for m in found]

            before = len(await archive())
            await wait_until(
                lambda: _archived(archive, before + 1), timeout=120, what="the archive moving"
            )
            resumed = time.monotonic() - restored_at
            await wait_until(
                lambda: _archived(archive, n), timeout=120, what=f"{n} sums archived at cloud"
            )
            drained = time.monotonic() - restored_at
            totals = await archive()
            assert totals == list(range(1, n + 1)), "lost, duplicated or reordered"
            print(
                f"cut {cut}s, {n} msgs: the cloud archive moved again {resumed:.2f}s and had "
                f"every sum {drained:.2f}s after the link came back ({before} before)"
            )
        assert await run.stop() == 0


async def _archived(archive, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len(await archive()) >= n


async def test_an_origin_that_overflowed_during_a_cut_is_reported_lost_once(
    tmp_path: Path,
) -> None:
    from diaspora.fabric import link_fault

    tree = THREE_SITES + '\n[streams."edge.numbers"]\nlimits = { max_msgs = 50 }\n'
    (tmp_path / "tree.toml").write_text(tree)

    async def lost_events(fabric: Fabric) -> list[tuple[int, int]] | None:
        try:
            found = await read_stream(
                fabric, "diaspora.events.actor.*.lost", stream="DIASPORA_EVENTS", missing_ok=True
            )
        except TimeoutError:  # a busy server: ask again
            return None
        return [(m.data["first"], m.data["last"]) for m in found if m.data]

    with diaspora_run(tmp_path, "tree.toml", "--json", "--every", "60", "--link-proxy") as run:
        _, urls = await site_lines(run)
        async with Fabric(urls["edge"]) as edge, Fabric(urls["hpc"]) as hpc:
            for i in range(1, 11):
                await edge.publish("edge.numbers", {"x": 1}, msg_id=f"a-{i}")

            async def copied() -> bool:  # the hub's copy has them: the hole comes after
                found = await read_stream(hpc, "edge.numbers", missing_ok=True)
                return len(found) == 10

            await wait_until(copied, timeout=30, what="the first 10 copied to hpc")
            await link_fault(edge, "edge", "cut", seconds=2)
            for i in range(11, 211):  # 200 while cut off: the edge keeps only the last 50
                await edge.publish("edge.numbers", {"x": 1}, msg_id=f"b-{i}")

            async def reported() -> bool:
                return await lost_events(hpc) == [(11, 160)]

            await wait_until(reported, timeout=60, what="the hole reported as lost at hpc")
        assert await run.stop() == 0
    # a second run goes on where the monitor stopped: the hole is not reported again
    with diaspora_run(tmp_path, "tree.toml", "--json", "--every", "60", name="again") as run:
        _, urls = await site_lines(run)
        async with Fabric(urls["hpc"]) as hpc:
            await anyio.sleep(2.5)  # two scans at least

            async def read() -> bool:
                found.append(await lost_events(hpc))
                return found[-1] is not None

            found: list[list[tuple[int, int]] | None] = []
            await wait_until(read, timeout=30, what="the lost events at hpc")
            assert found[-1] == [(11, 160)]
        assert await run.stop() == 0
