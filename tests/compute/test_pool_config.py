"""``[pools.<name>]`` in workflow files and PoolSpec in Python: one checker, errors naming the
file and the field; a file's pool runs under its root supervisor (its actor on a worker)."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import pytest

from diaspora.compute import (
    CheckpointAt,
    PoolActor,
    PoolController,
    PoolSpec,
    ProviderKind,
    SiteQuota,
)
from diaspora.errors import ConfigError
from diaspora.fabric import Fabric
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import ActorStart, parse_config
from diaspora.workflow._poolchild import PoolStart
from tests.compute.pool_actors import Tally

POOLED = """
[pools.recon]
sites.edge = { min = 1, max = 2 }
sites.hpc = { min = 2, max = 8 }
total_min = 3
provider = "process"
intensity = 2
period = 10.0

[supervisor]
[[supervisor.children]]
id = "ingest"
[[supervisor.children.children]]
id = "tally"
actor = "tests.compute.pool_actors:Tally"
pool = "recon"
site = "hpc"
movable = true
"""


def test_a_pool_table_and_its_actors_parse_into_the_spec_a_python_user_builds() -> None:
    config = parse_config(POOLED, source="flow.toml")
    (pool,) = config.pools
    assert pool == PoolSpec(
        "recon",
        {"edge": SiteQuota(1, 2), "hpc": SiteQuota(2, 8)},
        total_min=3,
        provider=ProviderKind.PROCESS,
        actors=(PoolActor("root.ingest.tally", ActorStart(Tally), site="hpc", movable=True),),
        intensity=2,
        period=10.0,
    )
    ingest, controller = config.spec.children
    assert ingest.start.children == ()  # the pool supervises its actors
    assert controller.id == "pool-recon"
    assert isinstance(controller.start, PoolStart)
    assert "root.ingest.tally" in config.actors()
    assert config.consumed() == ["jobs"]


SITES = """
[sites.hpc]
domain = "hpc"
"""

TWO_SITES = """
[sites.hpc]
domain = "h1"
[sites.edge]
domain = "e1"
parent = "hpc"
"""


def test_movable_actors_keep_their_checkpoints_at_the_checkpoint_site() -> None:
    text = (
        TWO_SITES + "[pools.recon]\nsites.edge = { min = 1 }\nsites.hpc = { min = 1 }\n"
        'checkpoint_site = "hpc"\n[supervisor]\n[[supervisor.children]]\nid = "t"\n'
        'site = "hpc"\nactor = "tests.compute.pool_actors:Tally"\npool = "recon"\n'
        "movable = true\nreturn_home = false\n"
        '[[supervisor.children]]\nid = "p"\nsite = "hpc"\n'
        'actor = "tests.compute.pool_actors:Tally"\npool = "recon"\n'
    )
    (pool,) = parse_config(text, source="flow.toml").pools
    assert (pool.checkpoint_site, pool.domain("hpc"), pool.domain("edge")) == ("hpc", "h1", "e1")
    movable, pinned = pool.actors
    assert (movable.movable, movable.return_home) == (True, False)
    assert CheckpointAt("h1") in pool.hosted(movable).start.stages  # its record at the hpc
    assert pool.hosted(pinned) is pinned  # a pinned actor keeps its checkpoint where it runs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[pools.recon]\nsites.edge = { min = 3, max = 2 }\n[supervisor]\n",
            "flow.toml: pools.recon.sites.edge.max: 2 is below min = 3",
        ),
        (
            "[pools.recon]\nsites.edge = { min = 1, most = 2 }\n[supervisor]\n",
            "flow.toml: pools.recon.sites.edge.most: unknown key; use min and max",
        ),
        (
            "[pools.recon]\nsites.edge = { min = -1 }\n[supervisor]\n",
            "flow.toml: pools.recon.sites.edge.min: -1 must be an integer >= 0",
        ),
        (
            '[pools.recon]\nsites.edge = { min = 1 }\nprovider = "ray"\n[supervisor]\n',
            "flow.toml: pools.recon.provider: 'ray' is not one of process, parsl",
        ),
        (
            "[pools.recon]\nsites.edge = { min = 1 }\nsize = 3\n[supervisor]\n",
            "flow.toml: pools.recon.size: unknown key; a pool takes",
        ),
        (
            "[pools.recon]\nsites.edge = { min = 1, max = 1 }\ntotal_min = 4\n[supervisor]\n",
            "flow.toml: pools.recon.total_min: 4 is more than the sites' max allow (1)",
        ),
        (
            "[pools.recon]\ntotal_min = 1\n[supervisor]\n",
            "flow.toml: pools.recon.sites: missing",
        ),
        (
            '[pools.recon]\nsites.edge = { min = 1 }\n[pools.recon.parsl.edge]\nprovider = "slurm"'
            "\n[supervisor]\n",
            'flow.toml: pools.recon.parsl: only applies with provider = "parsl"',
        ),
        (
            SITES + "[pools.recon]\nsites.edge = { min = 1 }\n[supervisor]\n",
            "flow.toml: pools.recon.sites.edge: no such site in [sites] (declared: hpc)",
        ),
        (
            '[supervisor]\n[[supervisor.children]]\nid = "t"\n'
            'actor = "tests.compute.pool_actors:Tally"\npool = "nope"\n',
            "flow.toml: supervisor.children[0].pool: 'nope' is not a declared pool (none)",
        ),
        (
            "[pools.recon]\nsites.edge = { min = 1 }\n[supervisor]\n[[supervisor.children]]\n"
            'id = "t"\nactor = "tests.compute.pool_actors:Tally"\npool = "recon"\nsite = "hpc"\n',
            "flow.toml: supervisor.children[0].site: 'hpc' is not a site of pool 'recon'",
        ),
        (
            "[pools.recon]\nsites.edge = { min = 1 }\n[supervisor]\n[[supervisor.children]]\n"
            'id = "t"\nactor = "tests.compute.pool_actors:Tally"\npool = "recon"\nprocess = true\n',
            "flow.toml: supervisor.children[0].process: does not apply to an actor in a pool",
        ),
        (
            '[supervisor]\n[[supervisor.children]]\nid = "t"\n'
            'actor = "tests.compute.pool_actors:Tally"\nmovable = true\n',
            "flow.toml: supervisor.children[0].movable: only applies to an actor with pool = ",
        ),
        (
            '[pools.recon]\nsites.edge = { min = 1 }\ncheckpoint_site = "hub"\n[supervisor]\n',
            "flow.toml: pools.recon.checkpoint_site: 'hub' is not a site of the pool",
        ),
        (
            TWO_SITES + "[pools.recon]\nsites.edge = { min = 1 }\nsites.hpc = { min = 1 }\n"
            '[supervisor]\n[[supervisor.children]]\nid = "t"\nsite = "hpc"\n'
            'actor = "tests.compute.pool_actors:Tally"\npool = "recon"\nmovable = true\n',
            "flow.toml: pools.recon.checkpoint_site: missing: movable actor 'root.t' "
            "(supervisor.children[0]) would start without its state at another site",
        ),
        (
            "[pools.recon]\nsites.edge = { min = 1 }\n[supervisor]\n[[supervisor.children]]\n"
            'id = "t"\nactor = "tests.compute.pool_actors:Tally"\npool = "recon"\n'
            "return_home = false\n",
            "flow.toml: supervisor.children[0].return_home: only applies to a movable actor",
        ),
    ],
)
def test_a_bad_pool_is_refused_naming_the_file_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="flow.toml")
    assert str(caught.value).startswith(message), str(caught.value)


def test_python_specs_are_checked_by_the_same_rules() -> None:
    with pytest.raises(ConfigError, match=r"^pools.recon.sites.edge.max: 2 is below min = 3"):
        PoolSpec("recon", {"edge": SiteQuota(3, 2)})
    with pytest.raises(ConfigError, match=r"^root.t.site: 'hpc' is not a site of pool 'recon'"):
        PoolSpec("recon", {"edge": SiteQuota(1, 1)}, actors=(PoolActor("root.t", Tally, "hpc"),))
    spec = PoolSpec("recon", {"edge": SiteQuota(1, 2)})
    with pytest.raises(ConfigError, match=r"pools.recon.sites.edge: no such site in \[sites\]"):
        spec.check_sites(["hpc"])


@pytest.mark.anyio
async def test_a_workflow_files_pool_runs_its_actor_on_a_worker(fabric: Fabric) -> None:
    config = parse_config(
        POOLED.replace("min = 2, max = 8", "min = 1, max = 2").replace("total_min = 3", ""),
        source="flow.toml",
    )
    await config.declare_streams(fabric)
    await fabric.ensure_stream("tallies")
    for n in range(3):
        await fabric.publish("jobs", {"n": n})
    supervisor = config.supervisor(fabric)
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)

        async def tallied() -> bool:
            return len(await read_stream(fabric, "tallies", missing_ok=True)) >= 3

        await wait_until(tallied, timeout=60, what="the pooled actor's 3 tallies")
        (record,) = [r for r in await supervisor.which_children() if r.id == "pool-recon"]
        assert isinstance(record.runnable, PoolController)
        assert record.runnable.worker_of["root.ingest.tally"] is not None
        supervisor.request_stop()
    tallies = await read_stream(fabric, "tallies")
    assert [t.data["n"] for t in tallies] == [0, 1, 2]


def test_the_docs_slurm_example_parses_into_parsl_executors(tmp_path: Path) -> None:
    pytest.importorskip(
        "parsl", reason='the parsl provider needs Parsl: pip install "diaspora[pools]"'
    )
    from diaspora.workflow._parsl import parsl_config

    page = (Path(__file__).resolve().parents[2] / "docs" / "pools.md").read_text()
    blocks = re.findall(r"^```toml\n(.*?)^```", page, flags=re.S | re.M)
    (example,) = [b for b in blocks if 'provider = "slurm"' in b]
    config = parse_config(example + "\n[supervisor]\n", source="pools.md")
    (pool,) = config.pools
    assert pool.provider is ProviderKind.PARSL
    assert pool.parsl["polaris"]["partition"] == "debug"
    built = parsl_config({"polaris": 8, "cloud": 2}, pool.parsl, str(tmp_path))
    polaris, cloud = built.executors
    assert type(polaris.provider).__name__ == "SlurmProvider"
    assert (polaris.provider.partition, polaris.provider.max_blocks) == ("debug", 8)
    assert polaris.block_error_handler.__name__ == "noop_error_handler"  # =False
    assert type(cloud.provider).__name__ == "LocalProvider"


def test_with_sites_each_pool_site_gets_its_sites_fabric() -> None:
    config = parse_config(
        SITES
        + '[sites.edge]\ndomain = "edge"\nparent = "hpc"\n'
        + POOLED.replace("total_min = 3\n", 'checkpoint_site = "hpc"\n'),
        source="flow.toml",
    )
    fabrics = {
        "hpc": Fabric("nats://127.0.0.1:1", name="hpc"),
        "edge": Fabric("nats://127.0.0.1:2"),
    }
    bound = config.bind_sites(fabrics)
    start = next(c.start for c in bound.children if c.id == "pool-recon")
    assert isinstance(start, PoolStart)
    assert start.fabrics() == fabrics
