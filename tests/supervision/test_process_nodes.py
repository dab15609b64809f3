"""Process nodes: a subtree in its own OS process, started, watched, stopped and
killed by its parent supervisor (heartbeat watchdog, SIGTERM then SIGKILL)."""

from __future__ import annotations

import os
import signal
import time
from functools import partial
from pathlib import Path

import anyio
import psutil
import pytest
from node_workers import (
    FailsToStart,
    HangsOnce,
    HangsStopping,
    Polite,
    SlowExit,
    Stubborn,
    lines,
)

from diaspora.errors import ChildStartError, ConfigError, NodeCrashed
from diaspora.events import (
    ChildStarted,
    Exited,
    MemorySink,
    NodeExited,
    NodeStarted,
    Restarted,
    Terminated,
)
from diaspora.events import NodeHung as NodeHungEvent
from diaspora.fabric import Fabric
from diaspora.supervision import ChildSpec, Supervisor, SupervisorSpec
from diaspora.testing import wait_until
from diaspora.workflow import NodeHung, ProcessNode, process_child

pytestmark = pytest.mark.anyio


_NODE_EVENTS = (NodeStarted, NodeHungEvent, NodeExited)


def kinds(sink: MemorySink, *, nodes: bool = False) -> list[str]:
    """The kinds of the supervisor's own decisions (``nodes``: of what its nodes reported)."""
    return [e.kind for e in sink.events if isinstance(e, _NODE_EVENTS) is nodes]


def reasons(sink: MemorySink, cls: type[Exited | Terminated]) -> list[str]:
    return [e.reason for e in sink.of(cls)]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def node_of(sup: Supervisor, child: str) -> ProcessNode:
    for record in await sup.which_children():
        if record.id == child:
            assert isinstance(record.runnable, ProcessNode)
            return record.runnable
    raise LookupError(child)


async def test_node_runs_its_subtree_in_another_process_and_stops_it_in_reverse_order(
    fabric: Fabric, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    subtree = SupervisorSpec(
        [ChildSpec("a", partial(Polite, str(log))), ChildSpec("b", partial(Polite, str(log)))]
    )
    sink = MemorySink()
    sup = Supervisor(
        SupervisorSpec([process_child("node", subtree, fabric)]), name="root", on_event=sink
    )
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        # started() only once the child's own supervisor started both children
        assert [line.rsplit(":", 1)[0] for line in lines(log)] == [
            "start:root.node.a",
            "start:root.node.b",
        ]
        node = await node_of(sup, "node")
        assert node.pid is not None
        assert node.pid != os.getpid()
        assert {line.rsplit(":", 1)[1] for line in lines(log)} == {str(node.pid)}
        sup.request_stop()
    assert lines(log)[2:] == ["stop:root.node.b", "stop:root.node.a"]
    assert node.returncode == 0
    assert reasons(sink, Terminated) == ["shutdown"]
    assert [(e.reason, e.returncode) for e in sink.of(NodeExited)] == [("shutdown", 0)]
    assert gone(node.pid)


async def test_killed_node_is_restarted_as_a_crash_and_one_sink_sees_node_and_supervisor(
    fabric: Fabric, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    sink = MemorySink()
    spec = SupervisorSpec([process_child("w", partial(Polite, str(log)), fabric)], intensity=3)
    sup = Supervisor(spec, name="root", on_event=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        first = (await node_of(sup, "w")).pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: sink.of(Restarted) != [], timeout=20)
        second = (await node_of(sup, "w")).pid
        sup.request_stop()
    assert second not in (None, first)
    # the node's report of its process and the supervisor's decisions, in one sink, in order
    killed = NodeExited(
        name="root",
        child="w",
        incarnation=0,
        pid=first,
        returncode=-signal.SIGKILL,
        reason="crashed",
    )
    (exited,) = sink.of(Exited)
    (restarted,) = sink.of(Restarted)
    events = sink.events
    assert events.index(killed) < events.index(exited) < events.index(restarted)
    assert restarted == Restarted(name="root", child="w", incarnation=1, attempt=1, cause="w")
    assert [e.pid for e in sink.of(NodeStarted)] == [first, second]
    assert sink.of(ChildStarted) == [ChildStarted(name="root", child="w", incarnation=0)]
    reason = exited.reason
    assert reason.startswith("NodeCrashed(")
    assert "killed by SIGKILL" in reason
    assert [line.split(":")[1] for line in lines(log)] == ["root.w", "root.w", "root.w"]
    assert gone(first)


async def test_hung_node_is_killed_by_the_heartbeat_watchdog_and_restarted(
    fabric: Fabric, tmp_path: Path
) -> None:
    log, marker = tmp_path / "log", tmp_path / "hang"
    marker.touch()
    sink = MemorySink()
    spec = SupervisorSpec(
        [
            process_child(
                "w", partial(HangsOnce, str(log), str(marker)), fabric, heartbeat_timeout=0.5
            )
        ],
        intensity=3,
    )
    sup = Supervisor(spec, name="root", on_event=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await wait_until(lambda: sink.of(Restarted) != [], timeout=20)
        sup.request_stop()
    hung_pid = int(next(line for line in lines(log) if line.startswith("hang:")).split(":")[1])
    (reason,) = reasons(sink, Exited)
    assert reason.startswith("NodeHung(")
    assert "sent no heartbeat" in reason
    assert reasons(sink, Terminated) == ["shutdown"]  # the second one stopped gracefully
    (hung,) = sink.of(NodeHungEvent)
    assert (hung.child, hung.pid) == ("w", hung_pid)
    assert hung.silent_s >= 0.5
    assert [e.reason for e in sink.of(NodeExited)] == ["hung", "shutdown"]
    assert sink.of(NodeExited)[0].pid == hung_pid
    assert gone(hung_pid)


async def test_a_stalled_parent_loop_is_not_taken_for_a_hung_node(
    fabric: Fabric, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    sink = MemorySink()
    spec = SupervisorSpec(
        [process_child("w", partial(Polite, str(log)), fabric, heartbeat_timeout=0.3)]
    )
    sup = Supervisor(spec, name="root", on_event=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        time.sleep(1.0)  # noqa: ASYNC251 - this loop stalls, the child keeps beating
        await anyio.sleep(0.3)
        sup.request_stop()
    assert kinds(sink) == ["started", "terminated"]
    assert kinds(sink, nodes=True) == ["node_started", "node_exited"]  # no node_hung
    assert reasons(sink, Terminated) == ["shutdown"]


async def test_a_node_slow_to_exit_after_its_tree_stopped_is_not_hung(
    fabric: Fabric, tmp_path: Path
) -> None:
    # its heartbeats end with its tree; the interpreter's exit then takes 1 s, silently
    sink = MemorySink()
    spec = SupervisorSpec(
        [
            process_child(
                "w", partial(SlowExit, str(tmp_path / "log"), 1.0), fabric, heartbeat_timeout=0.3
            )
        ]
    )
    sup = Supervisor(spec, name="root", on_event=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        sup.request_stop()
    assert kinds(sink, nodes=True) == ["node_started", "node_exited"]  # no node_hung
    assert [e.reason for e in sink.of(NodeExited)] == ["shutdown"]
    assert reasons(sink, Terminated) == ["shutdown"]


async def test_a_node_hanging_while_it_stops_is_still_killed_as_hung(
    fabric: Fabric, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    sink = MemorySink()
    spec = SupervisorSpec(
        [process_child("w", partial(HangsStopping, str(log)), fabric, heartbeat_timeout=0.3)]
    )
    sup = Supervisor(spec, name="root", on_event=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        sup.request_stop()
    assert kinds(sink, nodes=True) == ["node_started", "node_hung", "node_exited"]
    assert [e.reason for e in sink.of(NodeExited)] == ["hung"]
    assert any(line.startswith("hang:") for line in lines(log))


async def test_node_that_ignores_sigterm_is_killed_after_the_shutdown_timeout(
    fabric: Fabric, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    sink = MemorySink()
    spec = SupervisorSpec([process_child("w", partial(Stubborn, str(log)), fabric, shutdown=0.5)])
    sup = Supervisor(spec, name="root", on_event=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        node = await node_of(sup, "w")
        began = time.monotonic()
        sup.request_stop()
    assert time.monotonic() - began >= 0.5
    assert reasons(sink, Terminated) == ["killed"]
    assert node.returncode == -signal.SIGKILL
    assert lines(log)[1] == f"stop-ignored:{node.pid}"  # SIGTERM reached it first
    assert node.pid is not None
    assert gone(node.pid)


async def test_node_failing_before_started_is_a_start_failure_naming_the_reason(
    fabric: Fabric,
) -> None:
    sup = Supervisor(SupervisorSpec([process_child("w", FailsToStart, fabric)]), name="root")
    with pytest.raises(ChildStartError) as caught:
        await sup.run()
    cause = caught.value.__cause__
    assert isinstance(cause, NodeCrashed)
    assert not isinstance(cause, NodeHung)
    assert cause.returncode == 1
    assert any("no luck today" in note for note in cause.__notes__)


def test_subtree_that_cannot_reach_a_child_process_is_refused_up_front() -> None:
    with pytest.raises(ConfigError, match=r"child 'w'.*cannot be sent to a child process"):
        process_child("w", lambda: Polite("x"))
