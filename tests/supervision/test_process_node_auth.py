"""Process nodes and their standbys connect with the parent fabric's credentials."""

from __future__ import annotations

import os
import signal
from functools import partial
from pathlib import Path

import anyio
import pytest
from node_workers import Polite, lines

from diaspora.events import MemorySink, NodeStarted
from diaspora.fabric import Auth, EmbeddedServer, Fabric, User
from diaspora.supervision import Supervisor, SupervisorSpec
from diaspora.testing import wait_until
from diaspora.workflow import ProcessNode, process_child
from diaspora.workflow._standby import standby_pool

pytestmark = pytest.mark.anyio


async def test_process_node_connects_with_the_parents_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEC_NODE_PASSWORD", "pw")  # the child inherits the variable, not a secret
    log = tmp_path / "log"
    async with (
        EmbeddedServer(users=[User("app", password="pw")]) as server,
        Fabric(server.url, auth=Auth(user="app", password_env="SEC_NODE_PASSWORD")) as fabric,
    ):
        spec = SupervisorSpec(
            [process_child("w", partial(Polite, str(log)), fabric, standby=False)]
        )
        sup = Supervisor(spec, name="root")
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)  # started() only once the node connected and started w
            assert [line.rsplit(":", 1)[0] for line in lines(log)] == ["start:root.w"]
            sup.request_stop()
    assert lines(log)[1:] == ["stop:root.w"]


async def test_a_standby_connects_with_them_and_takes_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEC_NODE_PASSWORD", "pw")
    sink = MemorySink()
    async with (
        EmbeddedServer(users=[User("app", password="pw")]) as server,
        Fabric(server.url, auth=Auth(user="app", password_env="SEC_NODE_PASSWORD")) as fabric,
    ):
        spec = SupervisorSpec([process_child("w", partial(Polite, str(tmp_path / "log")), fabric)])
        sup = Supervisor(spec, name="root", on_event=sink)
        pool = standby_pool(fabric)
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            (record,) = await sup.which_children()
            assert isinstance(record.runnable, ProcessNode)
            first = record.runnable.pid
            assert first is not None
            standby = await pool.wait_ready(30)  # it connected: it says ready only then
            os.kill(first, signal.SIGKILL)
            await wait_until(lambda: len(sink.of(NodeStarted)) == 2, timeout=30)
            sup.request_stop()
    assert [(e.pid, e.standby) for e in sink.of(NodeStarted)] == [(first, False), (standby, True)]
