"""Warm standbys: a process node killed with ``kill -9`` is restarted in the interpreter its
parent started ahead (imported and connected), which is then replaced; standbys never
outlive their parent, their fabric or a tree stopped on purpose; ``standby = false`` spawns
cold every time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus
from node_workers import Polite

from diaspora.errors import ConfigError, RestartIntensityExceeded
from diaspora.events import MemorySink, NodeStarted, Restarted
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.supervision import Supervisor, SupervisorSpec
from diaspora.testing import wait_until
from diaspora.testing._pids import child_processes, is_running
from diaspora.testing._streams import read_stream
from diaspora.workflow import HOST_MODULE, ProcessNode, actor_child, parse_config, process_child
from diaspora.workflow._standby import standby_pool
from tests.actor.sample_actors import RunningSum
from tests.actor.test_exactly_once import expected_sums, publish_numbers, stream_count

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def node_of(sup: Supervisor) -> ProcessNode:
    (record,) = await sup.which_children()
    assert isinstance(record.runnable, ProcessNode)
    return record.runnable


async def sums_reach(fabric: Fabric, n: int) -> None:
    async def reached() -> bool:
        return await stream_count(fabric, "sums") >= n

    await wait_until(reached, timeout=60, interval=0.02, what=f"{n} sums")


def hosts() -> list[int]:
    """This process's live node and standby processes."""
    return child_processes(command=HOST_MODULE)


async def test_killed_node_restarts_in_the_standby_resumes_and_emits_each_output_once(
    fabric: Fabric,
) -> None:
    await fabric.ensure_stream("numbers")
    sink = MemorySink()
    spec = SupervisorSpec([actor_child("sum", RunningSum, fabric, process=True)], intensity=3)
    sup = Supervisor(spec, name="root", on_event=sink)
    pool = standby_pool(fabric)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        first = (await node_of(sup)).pid
        assert first is not None
        await publish_numbers(fabric, 300)
        await sums_reach(fabric, 300)
        standby = await pool.wait_ready(60)
        assert standby != first
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: len(sink.of(NodeStarted)) == 2, timeout=30)
        node = await node_of(sup)
        for x in range(300, 600):
            await fabric.publish("numbers", {"x": x})
        await sums_reach(fabric, 600)
        replacement = await pool.wait_ready(60)
        sup.request_stop()
    assert node.pid == standby  # the standby spawned before the kill became the node
    assert node.warm
    assert [(e.pid, e.standby) for e in sink.of(NodeStarted)] == [(first, False), (standby, True)]
    assert len(sink.of(Restarted)) == 1
    assert replacement not in (first, standby)  # and a new standby took its place
    out = [m.data for m in await read_stream(fabric, "sums")]
    assert out == expected_sums(600)  # resumed from its checkpoint: each output once
    # a tree stopped on purpose has no restart to take over: its standby is gone too
    assert hosts() == []


async def test_a_dead_standby_is_replaced_and_the_node_restarts_cold(
    fabric: Fabric, tmp_path: Path
) -> None:
    sink = MemorySink()
    spec = SupervisorSpec([process_child("w", partial(Polite, str(tmp_path / "log")), fabric)])
    sup = Supervisor(spec, name="root", on_event=sink)
    pool = standby_pool(fabric)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        first = (await node_of(sup)).pid
        assert first is not None
        dead = await pool.wait_ready(60)
        os.kill(dead, signal.SIGKILL)
        await wait_until(lambda: pool.pid is None, timeout=10, what="the standby seen dead")
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: len(sink.of(NodeStarted)) == 2, timeout=30)
        second = (await node_of(sup)).pid
        replacement = await pool.wait_ready(60)
        sup.request_stop()
    assert second not in (None, first, dead)
    assert [e.standby for e in sink.of(NodeStarted)] == [False, False]
    assert replacement not in (first, dead, second)
    assert pool.spawned == 2


async def test_with_standby_off_a_killed_node_restarts_cold_and_no_standby_runs(
    fabric: Fabric, tmp_path: Path
) -> None:
    sink = MemorySink()
    child = process_child("w", partial(Polite, str(tmp_path / "log")), fabric, standby=False)
    sup = Supervisor(SupervisorSpec([child]), name="root", on_event=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        first = (await node_of(sup)).pid
        assert first is not None
        assert hosts() == [first]
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: len(sink.of(NodeStarted)) == 2, timeout=30)
        second = (await node_of(sup)).pid
        assert second is not None
        assert hosts() == [second]
        sup.request_stop()
    assert second != first
    assert [e.standby for e in sink.of(NodeStarted)] == [False, False]
    assert standby_pool(fabric).spawned == 0


async def test_killing_the_parent_leaves_no_standby_behind(nats_server: EmbeddedServer) -> None:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "supervision")]),
        DIASPORA_LOG_LEVEL="WARNING",
    )
    code = f"import node_workers; node_workers.parent_with_a_standby({nats_server.url!r})"
    parent = await anyio.open_process([sys.executable, "-c", code], env=env, stderr=None)
    try:
        assert parent.stdout is not None
        line = b""
        with anyio.fail_after(120):
            while not line.endswith(b"\n"):  # a pipe read may return part of the line
                line += await parent.stdout.receive()
        node, standby = (int(pid) for pid in line.split())
        assert is_running(node)
        assert is_running(standby)
        assert standby in child_processes(parent.pid, command=HOST_MODULE)
        parent.kill()
        await parent.wait()

        def both_gone() -> bool:
            return not is_running(node) and not is_running(standby)

        await wait_until(both_gone, timeout=10, what="node and standby gone with their parent")
    finally:
        if parent.returncode is None:
            parent.kill()
            await parent.wait()
        await parent.aclose()


async def test_a_standby_kept_for_a_restart_that_never_came_dies_with_its_fabric(
    nats_server: EmbeddedServer, tmp_path: Path
) -> None:
    async with Fabric(nats_server.url, name="tree") as fabric:
        child = process_child("w", partial(Polite, str(tmp_path / "log")), fabric)
        sup = Supervisor(SupervisorSpec([child], intensity=0), name="root")
        pool = standby_pool(fabric)
        ended: list[BaseException] = []

        async def run(*, task_status: TaskStatus[None]) -> None:
            try:
                await sup.run(task_status=task_status)
            except RestartIntensityExceeded as exc:
                ended.append(exc)

        async with anyio.create_task_group() as tg:
            await tg.start(run)
            first = (await node_of(sup)).pid
            assert first is not None
            standby = await pool.wait_ready(60)
            os.kill(first, signal.SIGKILL)  # intensity 0: the supervisor gives up
        assert len(ended) == 1
        assert is_running(standby)  # a crash: kept for the restart that may come
    assert not is_running(standby)
    assert hosts() == []


def test_standby_is_a_process_node_key_in_config_files() -> None:
    tree = parse_config(
        '[[supervisor.children]]\nid = "sum"\nactor = "tests.actor.sample_actors:RunningSum"\n'
        "process = true\nstandby = false\n"
    )
    (child,) = tree.spec.children
    assert child.start.standby is False  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"children\[0\]\.standby: only applies to a child "):
        parse_config(
            '[[supervisor.children]]\nid = "sum"\n'
            'actor = "tests.actor.sample_actors:RunningSum"\nstandby = true\n'
        )


def test_the_node_host_imports_neither_the_actor_runtime_nor_the_config_parser() -> None:
    check = (
        "import sys, diaspora.workflow._host\n"
        "print(sorted(m for m in sys.modules if m.startswith(('diaspora.actor', "
        "'diaspora.workflow._config', 'diaspora.workflow._children', 'aiohttp.'))))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # a subtree that needs them imports them itself
