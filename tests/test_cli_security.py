"""``diaspora run`` connects with the credentials of the file's ``[fabric]`` table."""

from __future__ import annotations

from pathlib import Path

import pytest

from diaspora.fabric import Auth, EmbeddedServer, Fabric, User
from tests.test_cli_run import SUM_TREE, diaspora_run, totals_are

pytestmark = pytest.mark.anyio


async def test_run_uses_the_fabric_table_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEC_RUN_PASSWORD", "pw")
    async with EmbeddedServer(accounts={"WF": {"users": [User("app", password="pw")]}}) as server:
        (tmp_path / "tree.toml").write_text(
            f'[fabric]\nurl = "{server.url}"\nuser = "app"\npassword_env = "SEC_RUN_PASSWORD"\n'
            + SUM_TREE
        )
        auth = Auth(user="app", password="pw")
        async with Fabric(server.url, name="observer", auth=auth) as fabric:
            with diaspora_run(tmp_path, "tree.toml") as run:
                await run.wait_for(r"^diaspora: running")
                await fabric.ensure_stream("numbers")
                for x in (1, 2, 3):
                    await fabric.publish("numbers", {"x": x})
                await totals_are(fabric, [1, 3, 6])
                assert await run.stop() == 0
