"""The pytest example of docs/testing.md ("Testing your workflow under faults"), kept
verbatim there: tests/test_docs.py checks that the page shows exactly this file."""

from pathlib import Path

import pytest

from diaspora.testing import read_stream, wait_until

pytestmark = pytest.mark.anyio
RUNNING_SUM = Path(__file__).parents[2] / "supervisors" / "running_sum.toml"


async def test_running_sum_survives_kill_9_and_a_server_restart(fabric, workflow, injector):
    await fabric.ensure_stream("numbers")
    async with workflow(RUNNING_SUM) as wf:
        injector.pids = wf  # kill_process finds the actor's pid in this tree
        for x in range(1, 101):
            await fabric.publish("numbers", {"x": x})
        await injector.kill_process("root.sum")  # SIGKILL its process node
        await injector.restart_server()  # same port and store: streams survive
        for x in range(101, 201):
            await fabric.publish("numbers", {"x": x})

        async def all_summed():
            return len(await read_stream(fabric, "sums", missing_ok=True)) >= 200

        await wait_until(all_summed, timeout=60, what="200 sums")
        await wf.wait_running()
    totals = [m.data["total"] for m in await read_stream(fabric, "sums")]
    assert totals == [x * (x + 1) // 2 for x in range(1, 201)]  # each once, in order
