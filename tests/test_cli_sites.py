"""Sites in a workflow file: ``[sites.<name>]``, each child's ``site``, and ``diaspora run``
starting one embedded server per site, linked by leaf connections, every actor on its site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diaspora.errors import ConfigError
from diaspora.fabric import Fabric
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import parse_config
from tests.test_cli_run import diaspora_run

pytestmark = pytest.mark.anyio

TWO_SITES = """
[sites.edge]
domain = "edge"
parent = "hpc"
[sites.hpc]
domain = "hpc"
"""

TREE = (
    TWO_SITES
    + """
[supervisor]
site = "hpc"

[[supervisor.children]]
id = "edgesum"
site = "edge"
actor = "actors.examples:RunningSum"
args = { to = "edge.sums" }
inputs = ["edge.numbers"]

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
        await run.wait_for(r'"status": "running"', stdout=True)
        lines = [json.loads(line) for line in run.out().splitlines()]
        urls = {line["site"]: line["url"] for line in lines if line.get("site")}
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
