"""``diaspora run`` with ``[[triggers]]``: the file's trigger starts children of the running
tree through the control subject the command serves."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from diaspora import codec
from diaspora.fabric import Fabric
from diaspora.testing import read_stream, wait_until
from tests.test_cli_run import diaspora_run

pytestmark = pytest.mark.anyio

TREE = """
[supervisor]
intensity = 5
[[supervisor.children]]
id = "pool"
strategy = "simple_one_for_one"
intensity = 5
[[supervisor.children.children]]
id = "worker"
actor = "tests.triggers.trigger_actions:Worker"
args = { batch = [] }

[[triggers]]
name = "spawn"
subject = "jobs"
where = { "data.go" = true }
batch = { size = 2 }
action = { start_child = "root.pool", args = { label = "from-file" } }
"""


async def test_a_file_trigger_starts_a_child_per_batch_in_the_running_tree(
    fabric: Fabric, tmp_path: Path
) -> None:
    (tmp_path / "tree.toml").write_text(TREE)
    with diaspora_run(tmp_path, "tree.toml", "--url", fabric.urls[0]) as run:
        await run.wait_for(r"running 'root'")
        nc = await nats.connect(fabric.urls[0])
        try:
            js = nc.jetstream()
            for go in (True, False, True, True, True):
                await js.publish("jobs", codec.encode({"go": go}))
        finally:
            await nc.close()

        async def spawned() -> list[dict[str, object]]:
            return [m.data for m in await read_stream(fabric, "spawned", missing_ok=True)]

        async def two() -> bool:
            return len(await spawned()) >= 2

        await wait_until(two, timeout=60, what="two workers spawned")
        assert await run.stop() == 0
    found = sorted(await spawned(), key=lambda d: str(d["worker"]))
    assert found == [
        {"worker": "root.pool.worker-1", "label": "from-file", "seqs": [1, 3]},
        {"worker": "root.pool.worker-2", "label": "from-file", "seqs": [4, 5]},
    ]
