"""A view declared in a workflow file gets the stages its settings ask for (pins, snapshots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diaspora import codec
from diaspora.fabric import Fabric
from diaspora.testing import wait_until
from diaspora.views import read_pin, snapshot_versions, view_at

pytestmark = pytest.mark.anyio

WORKFLOW = """
[supervisor]
strategy = "one_for_one"

[views.kept]
output = "kept.out"
key = ["tile"]
within = 600.0
on_stale = "pin"
pin_budget = "1MiB"
pin_margin = 1000

[views.kept.snapshot]
every = 1
keep = 2

[views.kept.sources.a]
subject = "kept.a"
count = 2

[views.kept.sources.b]
subject = "kept.b"
"""


async def test_a_workflow_view_pins_and_snapshots(fabric: Fabric, workflow, tmp_path: Path) -> None:
    config = tmp_path / "kept.toml"
    config.write_text(WORKFLOW)
    for subject in ("kept.a", "kept.b"):
        await fabric.ensure_stream(subject)
    await fabric.publish("kept.a", {"tile": 0, "i": 0})
    await fabric.publish("kept.b", {"tile": 0})
    await fabric.publish("kept.a", {"tile": 0, "i": 1})  # item 1
    await fabric.publish("kept.a", {"tile": 1, "i": 0})  # open, its ref pinned
    async with workflow(config) as wf:
        await wf.wait_running()

        async def pinned() -> bool:
            return await read_pin(fabric, "kept", "kept_a", 3) is not None

        await wait_until(pinned, timeout=20, what="the open group's ref pinned")
        await wait_until(lambda: snapshot_versions(fabric, "kept"), timeout=20, what="snapshot")
    copy = await read_pin(fabric, "kept", "kept_a", 3)
    assert copy is not None
    assert codec.decode(copy.data) == {"tile": 1, "i": 0}
    then = await view_at(fabric, "kept", 1)
    assert list(then.groups.values()) == [[("kept_a", 3)]]
