"""Per-site credentials: a site with a url that requires them is checked and used with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from diaspora.errors import AuthorizationFailed, ConfigError
from diaspora.fabric import Auth, EmbeddedServer, Sites, SiteSpec, User
from diaspora.workflow import load_config

pytestmark = pytest.mark.anyio


async def test_a_url_site_is_checked_and_used_with_its_credentials() -> None:
    users = [User("app", password="pw")]
    async with EmbeddedServer(jetstream_domain="hpc", users=users) as server:
        spec = SiteSpec("hpc", domain="hpc", url=server.url, auth=Auth(user="app", password="pw"))
        async with Sites([spec]) as sites, sites.fabric("hpc") as fabric:
            await fabric.ensure_stream("hpc.check")
            assert (await fabric.publish("hpc.check", 1)).seq == 1
        bare = SiteSpec("hpc", domain="hpc", url=server.url)
        with pytest.raises(AuthorizationFailed, match=r"^sites\.hpc: NATS at .* authorization"):
            async with Sites([bare]):
                pass


def test_site_tables_take_the_fabric_auth_keys(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    path = tmp_path / "wf.toml"
    path.write_text(
        '[sites.hpc]\ndomain = "hpc"\nurl = "nats://hpc:4222"\nuser = "app"\n'
        'password_env = "HPC_PASSWORD"\ntls = { ca_file = "ca.pem" }\n'
        '[supervisor]\nsite = "hpc"\n'
    )
    (site,) = load_config(path).sites
    assert site.auth is not None
    assert (site.auth.user, site.auth.password_env) == ("app", "HPC_PASSWORD")
    assert site.auth.tls is not None
    assert site.auth.tls.ca_file == str(tmp_path / "ca.pem")


def test_fabric_credentials_with_sites_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wf.toml"
    path.write_text(
        '[fabric]\ntoken = "t"\n[sites.hpc]\ndomain = "hpc"\n[supervisor]\nsite = "hpc"\n'
    )
    with pytest.raises(ConfigError, match=r"wf\.toml: fabric: with \[sites\], give each site"):
        load_config(path)
    path.write_text('[sites.hpc]\ndomain = "hpc"\npassword = "x"\n[supervisor]\n')
    with pytest.raises(ConfigError, match=r"wf\.toml: sites\.hpc: a password needs a user"):
        load_config(path)
