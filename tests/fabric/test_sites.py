"""Sites: one embedded server per JetStream domain, linked by leaf nodes, checked before start."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psutil
import pytest

from diaspora.errors import (
    ConfigError,
    FabricUnavailable,
    PublishError,
    RevisionMismatch,
    StreamNotFound,
)
from diaspora.fabric import (
    Delivery,
    EmbeddedServer,
    Fabric,
    KvEntry,
    Sites,
    SiteSpec,
    SiteView,
    check_sites,
    free_port,
)
from diaspora.testing import read_stream

pytestmark = pytest.mark.anyio

CHAIN = [
    SiteSpec("edge", domain="edge", parent="hpc"),
    SiteSpec("hpc", domain="hpc", parent="cloud"),
    SiteSpec("cloud", domain="cloud"),
]


def nats_servers() -> set[int]:
    """PIDs of the nats-server processes this test process started and that still run."""
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if p.name() == "nats-server" and p.status() != psutil.STATUS_ZOMBIE
    }


def created(path: Path) -> list[str]:
    """What a Sites run left in its state directory (a site's folder: its server was made)."""
    return sorted(p.name for p in path.iterdir())


@pytest.fixture
async def chain(tmp_path: Path) -> AsyncIterator[Sites]:
    async with Sites(CHAIN, state_dir=tmp_path / "state") as sites:
        yield sites


async def info(fabric: Fabric, domain: str) -> dict[str, object]:
    answer = await fabric.request(f"$JS.{domain}.API.INFO", b"", timeout=5)
    result: dict[str, object] = json.loads(answer.data)
    return result


# -- the topology is checked before anything starts ------------------------------------


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            [SiteSpec("a", domain="x", parent="b"), SiteSpec("b", domain="y", parent="a")],
            "sites.a.parent: 'b' makes a cycle (a -> b -> a)",
        ),
        ([SiteSpec("a", domain="x", parent="a")], "sites.a.parent: 'a' makes a cycle (a -> a)"),
        (
            [
                SiteSpec("c", domain="z", parent="a"),
                SiteSpec("a", domain="x", parent="b"),
                SiteSpec("b", domain="y", parent="a"),
            ],
            "sites.a.parent: 'b' makes a cycle",
        ),
        (
            [SiteSpec("a", domain="x"), SiteSpec("b", domain="x", parent="a")],
            "sites.b.domain: 'x' is already the domain of site 'a'",
        ),
        ([SiteSpec("a", domain="x"), SiteSpec("a", domain="y")], "sites.a: declared twice"),
        (
            [SiteSpec("edge", domain="edge", parent="hcp"), SiteSpec("hpc", domain="hpc")],
            "sites.edge.parent: no site 'hcp' is declared (sites: edge, hpc)",
        ),
        (
            [SiteSpec("hpc", domain="hpc", url="nats://127.0.0.1:4222"), CHAIN[0]],
            "sites.edge.parent: site 'hpc' has a url but no leaf_url",
        ),
        ([], "sites: no site declared"),
    ],
)
async def test_a_bad_topology_is_refused_before_any_server_starts(
    specs: list[SiteSpec], message: str
) -> None:
    before = nats_servers()
    with pytest.raises(ConfigError, match=re.escape(message)):
        async with Sites(specs):
            pass
    assert nats_servers() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "e.1", "domain": "edge"}, "sites.e.1: 'e.1' is not a valid site name"),
        ({"name": "edge", "domain": "ed ge"}, "sites.edge.domain: 'ed ge' is not a valid"),
        ({"name": "edge", "domain": "edge", "url": " "}, "sites.edge.url: ' ' names no server"),
        (
            {"name": "edge", "domain": "edge", "url": "nats://h:1", "leaf_url": "http://h:2"},
            "sites.edge.leaf_url: 'http://h:2' is not a leaf-node URL",
        ),
        (
            {"name": "edge", "domain": "edge", "leaf_url": "nats-leaf://h:2"},
            "sites.edge.leaf_url: only a site with a url",
        ),
    ],
)
def test_a_bad_site_is_refused_naming_its_field(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        SiteSpec(**kwargs)  # type: ignore[arg-type]


def test_sites_are_ordered_parents_first() -> None:
    assert [s.name for s in check_sites(CHAIN)] == ["cloud", "hpc", "edge"]


def test_a_leaf_remote_must_be_a_leaf_url() -> None:
    with pytest.raises(ConfigError, match=re.escape("leaf_remotes[0]: 'nats://h'")):
        EmbeddedServer(leaf_remotes=["nats://h"])


# -- three embedded tiers --------------------------------------------------------------


async def test_sites_return_once_every_leaf_link_is_up(tmp_path: Path) -> None:
    async with Sites(CHAIN, state_dir=tmp_path) as sites:
        # nothing waited for here: the links must already be there
        for parent, child in (("hpc", "edge"), ("cloud", "hpc")):
            server = sites[parent].server
            assert server is not None
            leafz = await server.monitor("leafz")
            assert child in [leaf.get("name") for leaf in leafz.get("leafs") or []]


async def test_every_tier_reaches_every_domain_including_two_hops(chain: Sites) -> None:
    assert chain.names == ["cloud", "hpc", "edge"]
    assert len(nats_servers()) == 3
    for here in chain:
        assert here.leaf_url is not None
        assert here.leaf_url.startswith("nats-leaf://127.0.0.1:")
        async with chain.fabric(here.name, events_stream=False) as fabric:
            for there in chain:
                answer = await info(fabric, there.domain)
                assert answer.get("domain") == there.domain, (here.name, there.name, answer)


async def test_a_stream_created_through_a_site_view_exists_only_in_that_domain(
    chain: Sites,
) -> None:
    async with chain.fabric("hpc") as hpc, chain.fabric("edge") as edge_fabric:
        edge = chain.view(hpc, "edge")
        assert (
            repr(edge) == repr(SiteView(hpc, "edge")) == "SiteView('diaspora-hpc', domain='edge')"
        )
        await edge.ensure_stream("edge.ev", duplicate_window=30)
        for i in range(3):
            ack = await edge.publish("edge.ev", {"i": i}, msg_id=f"m{i}")
            assert (ack.stream, ack.domain) == ("edge_ev", "edge")
        assert (await edge.publish("edge.ev", {"i": 0}, msg_id="m0")).duplicate
        assert await edge.stream_bounds("edge.ev") == (1, 3)
        assert await edge_fabric.stream_bounds("edge.ev") == (1, 3)  # the edge's own
        with pytest.raises(StreamNotFound):
            await hpc.stream_bounds("edge.ev")
        with pytest.raises(StreamNotFound, match="in domain 'cloud'"):
            await chain.view(hpc, "cloud").stream_bounds("edge.ev")


async def test_a_pull_consumer_reads_another_sites_stream_through_its_view(
    chain: Sites,
) -> None:
    async with chain.fabric("edge") as edge_fabric, chain.fabric("cloud") as cloud:
        await edge_fabric.ensure_stream("edge.det")
        for i in range(3):
            await edge_fabric.publish("edge.det", {"i": i})
        got: list[Delivery] = []
        done = anyio.Event()

        def deliver(delivery: Delivery) -> None:
            got.append(delivery)
            if len(got) == 3:
                done.set()

        consumer = chain.view(cloud, "edge").pull_consumer(
            "edge.det",
            "cloud-reader",
            start_seq=1,
            deliver=deliver,
            credit=lambda: (10, 1 << 20) if not got else None,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            with anyio.fail_after(10):
                await done.wait()
            tg.cancel_scope.cancel()
        assert [d.seq for d in got] == [1, 2, 3]


async def test_kv_reads_and_writes_cross_domains(chain: Sites) -> None:
    async with chain.fabric("hpc") as hpc, chain.fabric("edge") as edge_fabric:
        kv = await chain.view(hpc, "edge").ensure_kv("cfg", history=5)
        assert kv.domain == "edge"
        first = await kv.put("mode", b"fast")
        assert (await kv.get("mode")).value == b"fast"  # type: ignore[union-attr]
        second = await kv.update("mode", b"safe", last=first)
        with pytest.raises(RevisionMismatch):
            await kv.update("mode", b"stale", last=first)
        with pytest.raises(RevisionMismatch):
            await kv.create("mode", b"again")
        await kv.create("fresh", b"1")
        await kv.delete("fresh")
        assert await kv.get("fresh") is None
        await kv.create("fresh", b"2")  # over the delete marker
        await kv.purge("mode")
        assert await kv.get("mode") is None
        # the edge's own fabric sees the writes; the hpc has no such bucket
        local = await edge_fabric.ensure_kv("cfg")
        assert (await local.get("fresh")).value == b"2"  # type: ignore[union-attr]
        assert second > first
        assert "KV_cfg" not in [s.config.name for s in await hpc.js.streams_info()], (
            "the bucket leaked into the hpc domain"
        )


async def test_kv_writes_reach_two_hops_and_the_own_domain_by_name(chain: Sites) -> None:
    async with chain.fabric("cloud") as cloud:
        for site in ("edge", "cloud"):
            kv = await chain.view(cloud, site).ensure_kv(f"cfg-{site}")
            revision = await kv.put("k", site.encode())
            assert await kv.get("k") == KvEntry("k", site.encode(), revision)


async def test_an_object_store_lives_in_the_views_domain(chain: Sites) -> None:
    async with chain.fabric("hpc") as hpc:
        models = await chain.view(hpc, "edge").ensure_object_store("models")
        await models.put("m1", b"weights" * 1000)
        assert (await models.get("m1")).data == b"weights" * 1000
        assert "OBJ_models" not in [s.config.name for s in await hpc.js.streams_info()]
        edge_names = [s.config.name for s in await hpc.nc.jetstream(domain="edge").streams_info()]
        assert "OBJ_models" in edge_names


async def test_a_publish_captured_in_another_domain_is_an_error(chain: Sites) -> None:
    async with chain.fabric("hpc") as hpc, chain.fabric("edge") as edge_fabric:
        await hpc.ensure_stream("hpc.jobs")  # in the hpc domain
        with pytest.raises(PublishError, match="of domain 'hpc', not of domain 'edge'"):
            await chain.view(edge_fabric, "edge").publish("hpc.jobs", {"n": 1}, timeout=2)
        with pytest.raises(StreamNotFound, match="in domain 'edge'"):
            await chain.view(edge_fabric, "edge").publish("edge.none", {"n": 1}, timeout=1)


async def test_a_rerun_with_the_same_state_dir_keeps_the_streams(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Sites(CHAIN, state_dir=state) as sites, sites.fabric("cloud") as cloud:
        edge = sites.view(cloud, "edge")
        await edge.ensure_stream("edge.kept")
        await edge.publish("edge.kept", {"n": 1})
        await edge.publish("edge.kept", {"n": 2})
    assert (state / "edge" / "jetstream").is_dir()
    assert nats_servers() == set()
    async with Sites(CHAIN, state_dir=state) as sites, sites.fabric("edge") as edge_fabric:
        assert await edge_fabric.stream_bounds("edge.kept") == (1, 2)


async def test_teardown_leaves_no_process_and_a_restarted_parent_relinks(tmp_path: Path) -> None:
    before = nats_servers()
    specs = [*CHAIN[:1], SiteSpec("hpc", domain="hpc")]
    async with Sites(specs) as sites:
        assert len(nats_servers() - before) == 2
        hpc = sites["hpc"].server
        assert hpc is not None
        await hpc.restart()  # same client and leaf ports: the edge links again
        await sites.wait_linked("edge", timeout=20)
    assert nats_servers() == before


async def test_an_unknown_site_is_named(chain: Sites) -> None:
    with pytest.raises(ConfigError, match=re.escape("no site 'hcp' is running; sites: cloud")):
        chain.fabric("hcp")


# -- sites with a url --------------------------------------------------------------


async def test_a_url_site_with_the_wrong_domain_is_an_error_naming_both(tmp_path: Path) -> None:
    async with EmbeddedServer(jetstream_domain="hpc") as server:
        before = nats_servers()
        specs = [SiteSpec("edge", domain="edge"), SiteSpec("hpc", domain="hcp", url=server.url)]
        with pytest.raises(
            ConfigError, match=re.escape("sites.hpc.domain: declared 'hcp', but the server at")
        ) as caught:
            async with Sites(specs, state_dir=tmp_path):
                pass
        assert "reports JetStream domain 'hpc'" in str(caught.value)
        assert nats_servers() == before
        assert created(tmp_path) == []


async def test_a_url_site_without_a_domain_is_an_error() -> None:
    async with EmbeddedServer() as server:
        with pytest.raises(ConfigError, match="reports JetStream domain None"):
            async with Sites([SiteSpec("hpc", domain="hpc", url=server.url)]):
                pass


async def test_an_unreachable_url_is_an_error_before_anything_starts(tmp_path: Path) -> None:
    before = nats_servers()
    url = f"nats://127.0.0.1:{free_port()}"
    specs = [
        SiteSpec("edge", domain="edge"),
        SiteSpec("hpc", domain="hpc", url=url, leaf_url="nats-leaf://127.0.0.1:1"),
    ]
    with pytest.raises(
        FabricUnavailable, match=re.escape(f"sites.hpc.url: cannot reach NATS at {url}")
    ):
        async with Sites(specs, connect_timeout=2, state_dir=tmp_path):
            pass
    assert nats_servers() == before
    assert created(tmp_path) == []


async def test_an_unreachable_parent_leaf_listener_is_an_error_before_anything_starts(
    tmp_path: Path,
) -> None:
    async with EmbeddedServer(jetstream_domain="hpc") as server:  # no leaf listener
        before = nats_servers()
        leaf = f"nats-leaf://127.0.0.1:{free_port()}"
        specs = [CHAIN[0], SiteSpec("hpc", domain="hpc", url=server.url, leaf_url=leaf)]
        with pytest.raises(
            FabricUnavailable,
            match=re.escape(
                f"sites.edge.parent: cannot reach the leafnodes listener of site 'hpc' at {leaf}"
            ),
        ):
            async with Sites(specs, connect_timeout=2, state_dir=tmp_path):
                pass
        assert nats_servers() == before
        assert created(tmp_path) == []


async def test_an_embedded_site_links_to_a_url_parent() -> None:
    async with EmbeddedServer(jetstream_domain="hpc", leaf_port=free_port()) as server:
        assert server.leaf_url is not None
        specs = [CHAIN[0], SiteSpec("hpc", domain="hpc", url=server.url, leaf_url=server.leaf_url)]
        async with Sites(specs) as sites, Fabric(server.url) as hpc:
            assert sites["hpc"].server is None
            assert sites["hpc"].url == server.url
            assert (await info(hpc, "edge")).get("domain") == "edge"
            edge = sites.view(hpc, "edge")
            await edge.ensure_stream("edge.up")
            assert (await edge.publish("edge.up", {"n": 1})).domain == "edge"
        assert "leafnodes" in server.config_path.read_text()


async def test_a_leaf_link_that_never_comes_up_is_an_error_and_stops_what_started() -> None:
    async with EmbeddedServer(jetstream_domain="hpc") as server:
        before = nats_servers()
        # the parent's client port, not a leafnodes listener: TCP answers, no leaf link forms
        wrong = server.url.replace("nats://", "nats-leaf://")
        specs = [CHAIN[0], SiteSpec("hpc", domain="hpc", url=server.url, leaf_url=wrong)]
        with pytest.raises(
            FabricUnavailable,
            match=re.escape(f"sites.edge: the leaf link to parent 'hpc' ({wrong}) is not up"),
        ):
            async with Sites(specs, link_timeout=2):
                pass
        assert nats_servers() == before


async def test_two_url_sites_that_are_not_linked_are_an_error_before_anything_starts(
    tmp_path: Path,
) -> None:
    async with (
        EmbeddedServer(jetstream_domain="cloud", leaf_port=free_port()) as cloud,
        EmbeddedServer(jetstream_domain="hpc", leaf_port=free_port()) as hpc,  # no remote
    ):
        before = nats_servers()
        specs = [
            SiteSpec("lab", domain="lab"),  # embedded, and first in the start order
            SiteSpec("cloud", domain="cloud", url=cloud.url, leaf_url=cloud.leaf_url),
            SiteSpec("hpc", domain="hpc", url=hpc.url, parent="cloud", leaf_url=hpc.leaf_url),
            CHAIN[0],
        ]
        with pytest.raises(
            FabricUnavailable, match=re.escape("sites.hpc: the leaf link to parent 'cloud'")
        ):
            async with Sites(specs, connect_timeout=1, state_dir=tmp_path):
                pass
        assert nats_servers() == before
        assert created(tmp_path) == []  # no embedded site was even created


async def test_url_sites_linked_outside_diaspora_are_accepted() -> None:
    async with EmbeddedServer(jetstream_domain="cloud", leaf_port=free_port()) as cloud:
        assert cloud.leaf_url is not None
        async with EmbeddedServer(jetstream_domain="hpc", leaf_remotes=[cloud.leaf_url]) as hpc:
            specs = [
                SiteSpec("cloud", domain="cloud", url=cloud.url, leaf_url=cloud.leaf_url),
                SiteSpec("hpc", domain="hpc", url=hpc.url, parent="cloud"),
            ]
            async with Sites(specs, connect_timeout=10) as sites:
                assert [site.url for site in sites] == [cloud.url, hpc.url]


async def test_events_and_dead_letters_stay_on_their_site(chain: Sites) -> None:
    async with chain.fabric("edge") as edge, chain.fabric("hpc") as hpc:
        await edge.publish_bytes("diaspora.events.actor.probe.started", b"{}")
        await edge.publish("diaspora.dlq.probe", {"reason": "test"})
        await hpc.publish_bytes("diaspora.events.actor.other.started", b"{}")
        # each site's streams hold that site's own event and dead letter only, once
        assert (await edge.stream_bounds("diaspora.events.>"))[1] == 1
        assert (await hpc.stream_bounds("diaspora.events.>"))[1] == 1
        dlq = "DIASPORA_DLQ"
        assert len(await read_stream(edge, "diaspora.dlq.probe", stream=dlq)) == 1
        assert await read_stream(hpc, "diaspora.dlq.probe", stream=dlq) == []
