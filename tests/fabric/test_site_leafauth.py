"""Secured sites: a parent with accounts asks its children's leaf links for credentials."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from diaspora.errors import AuthorizationFailed, ConfigError, StreamNotFound
from diaspora.fabric import (
    Account,
    Auth,
    Bridge,
    Fabric,
    Sites,
    SiteSpec,
    User,
    ensure_bridge,
    read_stored,
)
from diaspora.testing import wait_until

pytestmark = pytest.mark.anyio

#: The hub's accounts: the workflow's (WF, which the edge's link joins) and a stranger's.
HUB_ACCOUNTS = {
    "WF": Account(users=(User("app", password="hub-pw"),)),
    "OTHER": Account(users=(User("eve", password="eve-pw"),)),
}
UP = Bridge("edge.readings", from_domain="edge", to_domain="hpc")


def secured_sites(link: Auth | None) -> list[SiteSpec]:
    return [
        SiteSpec(
            "hpc", domain="hpc", accounts=HUB_ACCOUNTS, auth=Auth(user="app", password="hub-pw")
        ),
        SiteSpec(
            "edge",
            domain="edge",
            parent="hpc",
            auth=Auth(user="instrument", password_env="LEAFAUTH_EDGE_PW"),
            link_auth=link,
        ),
    ]


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAFAUTH_EDGE_PW", "edge-pw")
    monkeypatch.setenv("LEAFAUTH_LINK_PW", "hub-pw")


async def test_a_secured_hub_links_a_leaf_bound_to_its_account_and_a_bridge_copies(
    tmp_path: Path,
) -> None:
    specs = secured_sites(Auth(user="app", password_env="LEAFAUTH_LINK_PW"))
    async with (
        Sites(specs, state_dir=tmp_path) as sites,
        sites.fabric("hpc") as hub,
        sites.fabric("edge") as edge,
    ):
        hpc_server = sites["hpc"].server
        assert hpc_server is not None
        leafz = await hpc_server.monitor("leafz")
        assert [leaf["account"] for leaf in leafz["leafs"]] == ["WF"]
        await edge.ensure_stream(UP.subject, duplicate_window=120)
        await ensure_bridge(hub, UP)
        for n in range(50):
            await edge.publish(UP.subject, {"n": n})

        async def copied() -> bool:
            return len([m async for m in read_stored(hub, UP.subject)]) == 50

        await wait_until(copied, timeout=30, interval=0.05)
        kv = await sites.view(hub, "edge").ensure_kv("cfg")  # KV across domains, same account
        revision = await kv.put("mode", b"fast")
        assert (await (await edge.ensure_kv("cfg")).get("mode")).revision == revision  # type: ignore[union-attr]
        # the stranger's account on the same hub sees neither the copy nor the edge
        async with Fabric(sites["hpc"].url, auth=Auth(user="eve", password="eve-pw")) as eve:
            with pytest.raises(StreamNotFound):
                [m async for m in read_stored(eve, UP.subject)]
        with pytest.raises(AuthorizationFailed, match="authorization failed for no credentials"):
            async with Fabric(sites["hpc"].url):
                pass


async def test_a_leaf_with_the_wrong_password_is_refused_naming_the_site(tmp_path: Path) -> None:
    specs = secured_sites(Auth(user="app", password="not-the-password"))
    with pytest.raises(
        AuthorizationFailed,
        match=r"^sites\.edge\.link: site 'hpc' refused the leaf link's credentials "
        r"\(user 'app'\): authorization violation; give the link the user and password of a user "
        r"of site 'hpc''s account$",
    ):
        async with Sites(specs, state_dir=tmp_path):
            pass


def test_a_leaf_without_credentials_to_a_secured_hub_is_refused_before_start(
    tmp_path: Path,
) -> None:
    with pytest.raises(
        ConfigError,
        match=re.escape("sites.edge.link: site 'hpc' asks its leaf links for credentials"),
    ):
        Sites(secured_sites(None), state_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing started, no store made


async def test_three_secured_tiers_reach_each_other_through_their_accounts(tmp_path: Path) -> None:
    hub = Auth(user="app", password="hub-pw")
    specs = [
        SiteSpec("cloud", domain="cloud", auth=Auth(user="archivist", password="cloud-pw")),
        SiteSpec(
            "hpc",
            domain="hpc",
            parent="cloud",
            accounts=HUB_ACCOUNTS,
            auth=hub,
            link_auth=Auth(user="archivist", password="cloud-pw"),
        ),
        SiteSpec("edge", domain="edge", parent="hpc", link_auth=hub),  # an open edge ($G)
    ]
    async with Sites(specs, state_dir=tmp_path) as sites, sites.fabric("cloud") as cloud:
        edge = sites.view(cloud, "edge")  # two secured hops down
        await edge.ensure_stream("edge.far")
        assert (await edge.publish("edge.far", {"n": 1})).domain == "edge"
