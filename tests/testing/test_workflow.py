"""Workflow and the ``workflow`` fixture: a TOML tree run in-process against the test's
server, its pids found in the tree, and nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diaspora.errors import StreamNotFound
from diaspora.events import ChildStarted
from diaspora.fabric import Fabric
from diaspora.testing import Workflow, WorkflowError, wait_until
from diaspora.testing._pids import is_running
from diaspora.testing._streams import read_stream
from diaspora.testing.plugin import WorkflowRunner
from diaspora.workflow import parse_config
from tests.testing.trees import ECHO_IN_PROCESS, ECHO_NODE, FAILS_TO_START, GIVES_UP

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def echoed(fabric: Fabric, n: int) -> bool:
    try:
        return len(await read_stream(fabric, "echo.out")) >= n
    except Exception:
        return False


async def test_tree_from_a_toml_file_runs_and_leaves_no_process_behind(
    fabric: Fabric, workflow: WorkflowRunner
) -> None:
    await fabric.ensure_stream("echo.in")
    async with workflow(parse_config(ECHO_NODE, source="echo.toml")) as wf:
        await wf.wait_running()
        pid = await wf.wait_pid("root.echo")
        assert pid != os.getpid()
        assert is_running(pid)
        assert await wf.locate("root.echo") == pid
        await fabric.publish("echo.in", {"x": 1})
        await wait_until(lambda: echoed(fabric, 1), timeout=20)
        assert [type(e) for e in wf.events].count(ChildStarted) == 1
    assert wf.orphans == []
    assert not is_running(pid)
    assert wf.ended
    assert wf.error is None
    assert wf.gave_up == []


async def test_in_process_actor_is_located_in_this_process(
    fabric: Fabric, workflow: WorkflowRunner
) -> None:
    async with workflow(parse_config(ECHO_IN_PROCESS)) as wf:
        assert await wf.wait_pid("root.echo") == os.getpid()
        with pytest.raises(TimeoutError, match=r"no live process of 'root\.nope'"):
            await wf.wait_pid("root.nope", timeout=0.2)


async def test_supervisor_giving_up_is_recorded_and_the_tree_ends(
    fabric: Fabric, workflow: WorkflowRunner
) -> None:
    await fabric.ensure_stream("numbers")
    async with workflow(parse_config(GIVES_UP)) as wf:
        await fabric.publish("numbers", {"x": 1})
        await wait_until(lambda: wf.ended, timeout=20, what="tree ended")
        assert not await wf.running()
    assert [e.child for e in wf.gave_up] == ["bad"]
    assert "RestartIntensityExceeded" in repr(wf.error)


async def test_tree_that_cannot_start_raises_saying_why(nats_server: object) -> None:
    url = nats_server.url  # type: ignore[attr-defined]
    with pytest.raises(WorkflowError, match=r"failed to start.*FailsOnStart: cannot start"):
        async with Workflow(parse_config(FAILS_TO_START, source="broken.toml"), url):
            pass


async def test_shipped_reliability_tree_runs_under_the_fixture(
    fabric: Fabric, workflow: WorkflowRunner
) -> None:
    async with workflow(ROOT / "supervisors" / "reliability.toml") as wf:
        await wf.wait_running()
        children = await wf.children()
        assert sorted(children) == ["root.producer", "root.sink", "root.transform"]
        pids = {await wf.wait_pid(p) for p in ("root.transform", "root.sink")}
        assert len(pids) == 2
        assert os.getpid() not in pids
    assert wf.orphans == []


async def test_reading_a_subject_without_a_stream_says_so_or_gives_nothing(fabric: Fabric) -> None:
    missing = r"no stream 'never_written' for subject 'never\.written'.*ensure_stream"
    with pytest.raises(StreamNotFound, match=missing):
        await read_stream(fabric, "never.written")
    assert await read_stream(fabric, "never.written", missing_ok=True) == []
