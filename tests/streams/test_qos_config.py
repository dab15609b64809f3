"""Stream QoS and limits declared in a supervision-tree config file."""

from __future__ import annotations

import pytest

from diaspora.errors import ConfigError
from diaspora.fabric import Fabric
from diaspora.streams import OverloadPolicy, QosSpec, lookup_qos
from diaspora.workflow import parse_config
from tests.sites_rig import TWO_SITES

pytestmark = pytest.mark.anyio

TREE = """
[supervisor]
[[supervisor.children]]
id = "sum"
actor = "actors.examples:RunningSum"
"""


async def test_streams_table_declares_qos_and_limits(fabric: Fabric) -> None:
    config = parse_config(
        """
[streams."edge1.temps"]
qos = { rate = 100.0, max_lag_items = 500, policy = { kind = "decimate", k = 4 } }
limits = { max_msgs = 1000, duplicate_window = 60.0 }
"""
        + TREE,
        source="tree.toml",
    )
    await config.declare_streams(fabric)
    spec = await lookup_qos(fabric, "edge1.temps")
    assert spec == QosSpec(rate=100.0, max_lag_items=500, policy=OverloadPolicy.decimate(4))
    info = await fabric.js.stream_info("edge1_temps")
    assert (info.config.max_msgs, info.config.duplicate_window) == (1000, 60.0)


async def test_a_bridged_streams_qos_is_declared_at_its_copys_site_too(fabric: Fabric) -> None:
    """Consumers of the copy (at the bridge's target) read the QoS where they run."""
    config = parse_config(
        TWO_SITES
        + """
[streams."edge1.temps"]
qos = { reconstructor = "linear" }
[[bridges]]
subject = "edge1.temps"
from = "edge"
to = "hpc"
[supervisor]
site = "hpc"
[[supervisor.children]]
id = "sum"
actor = "actors.examples:RunningSum"
inputs = ["edge1.temps"]
""",
        source="tree.toml",
    )
    await config.declare_streams(fabric, site="hpc")  # the copy's site: QoS, no stream
    assert await lookup_qos(fabric, "edge1.temps") == QosSpec(reconstructor="linear")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            '[streams."a b"]\nqos = {}',
            "tree.toml: streams.a b: 'a b' is not a literal NATS subject",
        ),
        (
            "[streams.x]\nqos = { rate = -1 }",
            "tree.toml: streams.x.qos.rate: -1 must be a number > 0",
        ),
        (
            "[streams.x]\nlimits = { max_msgs = 0 }",
            "tree.toml: streams.x.limits: stream limits: max_msgs=0",
        ),
        (
            "[streams.x]\nlimits = { max_msg = 1 }",
            "tree.toml: streams.x.limits.max_msg: unknown key",
        ),
        ("[streams.x]\nwhat = 1", "tree.toml: streams.x.what: unknown key"),
        (
            '[streams.x]\nqos = { policy = "sometimes" }',
            "tree.toml: streams.x.qos.policy: 'sometimes'",
        ),
        (
            '[streams.x]\nqos = { reconstructor = "nowhere.mod:X" }',
            "tree.toml: streams.x.qos.reconstructor: 'nowhere.mod:X': cannot import",
        ),
    ],
)
def test_bad_streams_tables_name_file_and_field(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(table + "\n" + TREE, source="tree.toml")
    assert str(error.value).startswith(message)
