"""Pids: which process runs an actor or node (from events), and whether it is ours."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
import pytest

from diaspora.events import NodeStarted, Started
from diaspora.fabric import Fabric
from diaspora.testing import PidWatcher, wait_until
from diaspora.testing._pids import child_processes, is_descendant, is_running, node_path

pytestmark = pytest.mark.anyio


def test_processes_this_test_started_are_descendants_others_are_not() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert is_running(proc.pid)
        assert is_descendant(proc.pid)
        assert proc.pid in child_processes(command="time.sleep(30)")
        assert not is_descendant(os.getpid())
        assert not is_descendant(1)
    finally:
        proc.kill()
        proc.wait()
    assert not is_running(proc.pid)
    assert proc.pid not in child_processes()


def test_events_name_the_actor_or_node_their_pid_belongs_to() -> None:
    started = {"category": "actor", "kind": "started", "name": "root.sum", "pid": 7}
    node = {"kind": "node_started", "supervisor": "root.stage", "child": "sum", "pid": 8}
    assert node_path(started) == "root.sum"
    assert node_path(node) == "root.stage.sum"
    assert node_path({"kind": "crashed", "name": "root.sum"}) is None


async def test_watcher_records_pids_from_started_events_and_waits_for_a_live_one(
    fabric: Fabric,
) -> None:
    async with (
        await anyio.open_process([sys.executable, "-c", "import time; time.sleep(30)"]) as proc,
        PidWatcher(fabric) as watcher,
    ):
        await fabric.emit(Started(name="root.sum", positions={}, epoch=1, pid=os.getpid()))
        await fabric.emit(NodeStarted(name="root", child="sum", incarnation=0, pid=proc.pid))
        await wait_until(lambda: len(watcher.pids.get("root.sum", [])) == 2, timeout=5)
        assert watcher.pids["root.sum"] == [os.getpid(), proc.pid]
        assert await watcher.wait_pid("root.sum", timeout=1) == proc.pid
        proc.kill()
        await proc.wait()
        # the newest pid is dead: nothing live is known until a newer one starts
        with pytest.raises(TimeoutError, match=r"no live process of 'root\.sum'"):
            await watcher.wait_pid("root.sum", timeout=0.2)
