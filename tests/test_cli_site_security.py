"""``diaspora run`` with a secured hub: its server asks clients and leaf links for credentials,
the edge's ``link`` table presents them, and a bridge copies across the secured link."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from diaspora.errors import AuthorizationFailed, ConfigError
from diaspora.fabric import Auth, Fabric
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import parse_config
from tests.sites_rig import site_lines
from tests.test_cli_run import diaspora_run

pytestmark = pytest.mark.anyio

SECURED = """
[sites.edge]
domain = "edge"
parent = "hpc"
link = { user = "app", password_env = "CLI_SEC_LINK_PASSWORD" }
[sites.hpc]
domain = "hpc"
user = "app"
password_env = "CLI_SEC_HUB_PASSWORD"

[[bridges]]
subject = "edge.numbers"
from = "edge"
to = "hpc"

[supervisor]
site = "hpc"
[[supervisor.children]]
id = "sum"
actor = "actors.examples:RunningSum"
args = { to = "hpc.sums" }
inputs = ["edge.numbers"]
"""


async def test_run_with_a_secured_hub_links_the_edge_and_bridges_its_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_SEC_HUB_PASSWORD", "hub-pw")
    monkeypatch.setenv("CLI_SEC_LINK_PASSWORD", "hub-pw")
    (tmp_path / "tree.toml").write_text(SECURED)
    with diaspora_run(tmp_path, "tree.toml", "--json", "--every", "60", "--ephemeral") as run:
        _, urls = await site_lines(run)
        auth = Auth(user="app", password="hub-pw")
        async with Fabric(urls["edge"]) as edge, Fabric(urls["hpc"], auth=auth) as hpc:
            for x in (1, 2, 3):
                await edge.publish("edge.numbers", {"x": x})

            async def summed() -> bool:
                found = await read_stream(hpc, "hpc.sums", missing_ok=True)
                return [m.data["total"] for m in found] == [1, 3, 6]

            await wait_until(summed, timeout=60, what="the hub's sums of the bridged numbers")
            with pytest.raises(AuthorizationFailed, match="authorization failed"):
                async with Fabric(urls["hpc"]):
                    pass
        assert await run.stop() == 0


async def test_run_with_a_wrong_link_password_fails_naming_the_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_SEC_HUB_PASSWORD", "hub-pw")
    monkeypatch.setenv("CLI_SEC_LINK_PASSWORD", "guessed")
    (tmp_path / "tree.toml").write_text(SECURED)
    with diaspora_run(tmp_path, "tree.toml", "--ephemeral") as run:
        code = await anyio.to_thread.run_sync(lambda: run.proc.wait(timeout=60))
        assert code != 0
        assert (
            "sites.edge.link: site 'hpc' refused the leaf link's credentials (user 'app'): "
            "authorization violation; give the link the user and password of a user of site "
            "'hpc''s account (is $CLI_SEC_LINK_PASSWORD right?)"
        ) in run.err()
        assert "running" not in run.err()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'link = { user = "app", password_env = "CLI_SEC_LINK_PASSWORD" }\n',
            "",
            "t.toml: sites.edge.link: site 'hpc' asks its leaf links for credentials",
        ),
        (
            'link = { user = "app", password_env = "CLI_SEC_LINK_PASSWORD" }',
            'link = { user = "app" }',
            "t.toml: sites.edge.link: user 'app' has no password: set password_env",
        ),
        (
            'link = { user = "app", password_env = "CLI_SEC_LINK_PASSWORD" }',
            'link = { token = "t" }',
            "t.toml: sites.edge.link.token: unknown key",
        ),
        (
            'user = "app"\npassword_env = "CLI_SEC_HUB_PASSWORD"\n',
            'token = "t"\n',
            "t.toml: sites.hpc: an embedded site secures its server with a user and password",
        ),
    ],
)
def test_site_security_fields_are_checked_naming_file_and_field(
    old: str, new: str, message: str
) -> None:
    assert old in SECURED
    with pytest.raises(ConfigError) as caught:
        parse_config(SECURED.replace(old, new), source="t.toml")
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_link_table_gives_the_edge_its_link_credentials() -> None:
    config = parse_config(SECURED, source="t.toml")
    edge, hpc = config.sites
    assert edge.link_auth == Auth(user="app", password_env="CLI_SEC_LINK_PASSWORD")
    assert hpc.auth == Auth(user="app", password_env="CLI_SEC_HUB_PASSWORD")
