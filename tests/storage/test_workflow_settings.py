"""``checkpoint_storage`` per actor and ``pin_storage`` per view, set in a workflow TOML file:
validated (errors name the file, the child and the field) and used (real servers per site)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest

from diaspora.actor import CheckpointSlot
from diaspora.errors import ConfigError
from diaspora.fabric import Sites
from diaspora.storage import Policy, StorageSpec
from diaspora.testing import wait_until
from diaspora.workflow import parse_config
from tests.storage.rig import kill, specs

pytestmark = pytest.mark.anyio

SITES = {"hub": "hub", "a": "a", "b": "b", "c": "c", "d": "d"}


def toml_table(spec: dict[str, object]) -> str:
    """An inline TOML table of plain strings, numbers and tables (JSON's syntax is close)."""
    parts = []
    for key, value in spec.items():
        if isinstance(value, dict):
            parts.append(f"{key} = {toml_table(value)}")
        else:
            parts.append(f"{key} = {json.dumps(value)}")
    return "{ " + ", ".join(parts) + " }"


STORAGE = {
    "sites": SITES,
    "bucket": "wfck",
    "meta": "hub",
    "policy": {"layout": "rs:3+2", "lose": 2, "chunk_size": 1 << 20},
}


def actor_file(storage: dict[str, object]) -> str:
    return f"""
[supervisor]
[[supervisor.children]]
id = "keeper"
actor = "tests.actor.sample_actors:Hoarder"
checkpoint_storage = {toml_table(storage)}
"""


def test_checkpoint_storage_is_read_from_a_workflow_file() -> None:
    config = parse_config(actor_file(STORAGE), source="flow.toml")
    start = config.spec.children[0].start
    assert start.checkpoint_storage == StorageSpec(  # type: ignore[union-attr]
        SITES, "wfck", Policy(layout="rs:3+2", lose=2, chunk_size=1 << 20), "hub"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"policy": {"layout": "rs:3"}}, "checkpoint_storage: layout 'rs:3': write rep:<copies>"),
        ({"policy": {"lose": 3, "layout": "rs:3+2"}}, "checkpoint_storage: storage policy: layout"),
        ({"policy": {"speed": 1}}, "checkpoint_storage.policy.speed: unknown key"),
        ({"meta": "zz"}, "checkpoint_storage.meta: 'zz' is not one of its sites"),
        ({"sites": {}}, "checkpoint_storage.sites: missing or empty"),
        ({"sites": {"a": 1}}, "checkpoint_storage.sites.a: 1 is not a JetStream domain"),
        ({"bucket": 7}, "checkpoint_storage.bucket: 7 is not a string"),
        ({"where": "x"}, "checkpoint_storage.where: unknown key"),
    ],
)
def test_a_bad_checkpoint_storage_names_file_child_and_field(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(actor_file({**STORAGE, **change}), source="flow.toml")
    assert str(caught.value).startswith("flow.toml: supervisor.children[0].checkpoint_storage")
    assert message in str(caught.value)


VIEW_FILE = """
[supervisor]
[views.tiles]
output = "tiles.out"
key = ["tile"]
within = 30.0
on_stale = "pin"
sources.diff = {{ subject = "tiles.diff" }}
pin_storage = {storage}
"""


def test_pin_storage_is_read_from_a_workflow_file_and_checked() -> None:
    pins = {**STORAGE, "bucket": "wfpins"}
    config = parse_config(VIEW_FILE.format(storage=toml_table(pins)), source="flow.toml")
    (child,) = [c for c in config.spec.children if c.id == "tiles"]
    view = child.start.args["view"]  # type: ignore[union-attr]
    assert view.pin_storage == StorageSpec(
        SITES, "wfpins", Policy(layout="rs:3+2", lose=2, chunk_size=1 << 20), "hub"
    )
    bad = {**pins, "policy": {"overhead": 1.2, "layout": "rs:3+2", "lose": 2}}
    with pytest.raises(ConfigError, match=r"^flow.toml: views.tiles.pin_storage: storage policy"):
        parse_config(VIEW_FILE.format(storage=toml_table(bad)), source="flow.toml")


async def test_an_actor_of_a_workflow_file_keeps_its_checkpoint_in_storage(tmp_path: Path) -> None:
    async with Sites(specs(), state_dir=tmp_path / "sites") as sites, sites.fabric("hub") as fabric:
        config = parse_config(actor_file(STORAGE), source="flow.toml")
        await fabric.ensure_stream("frames")
        rng = np.random.default_rng(2)
        count = fabric.inline_limit // (256 * 256 * 4) + 4  # more than one KV value holds
        for _ in range(count):
            await fabric.publish("frames", {"frame": rng.random((256, 256), dtype=np.float32)})
        supervisor = config.supervisor(fabric)
        async with anyio.create_task_group() as tg:
            await tg.start(supervisor.run)

            async def stored() -> bool:
                record = await CheckpointSlot.peek(fabric, "root.keeper")
                ref = None if record is None else record.state_ref
                return ref is not None and ref.startswith("storage:wfck/")

            await wait_until(stored, timeout=30, what="a checkpoint in resilient storage")
            supervisor.request_stop()
        await kill(sites, "a")
        await kill(sites, "b")  # the policy's two sites lost: the state still reads
        record = await CheckpointSlot.peek(fabric, "root.keeper", state=True)
        assert record is not None
        assert len(record.state["frames"]) >= 10  # type: ignore[index]
