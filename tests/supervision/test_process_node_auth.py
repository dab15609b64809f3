"""A process node connects with its parent fabric's credentials (the server requires them)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import pytest
from node_workers import Polite, lines

from diaspora.fabric import Auth, EmbeddedServer, Fabric, User
from diaspora.supervision import Supervisor, SupervisorSpec
from diaspora.workflow import process_child

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
