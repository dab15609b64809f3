"""A hub and four leaf sites, each its own nats-server and JetStream domain, for storage tests."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from diaspora.fabric import Fabric, Sites, SiteSpec
from diaspora.fabric._fragments import FragmentSite
from diaspora.storage import Fragment, Policy, Storage

LEAVES = ("a", "b", "c", "d")


def specs(proxied: tuple[str, ...] = ()) -> list[SiteSpec]:
    return [SiteSpec("hub", domain="hub")] + [
        SiteSpec(s, domain=s, parent="hub", link_proxy=s in proxied) for s in LEAVES
    ]


@asynccontextmanager
async def rig(
    tmp_path: Path,
    policy: Policy,
    *,
    proxied: tuple[str, ...] = (),
    bucket: str = "t",
    meta: str | None = None,
) -> AsyncIterator[tuple[Sites, Fabric, Storage]]:
    async with (
        Sites(specs(proxied), state_dir=tmp_path / "sites") as sites,
        sites.fabric("hub", request_timeout=2.0) as fabric,
        Storage(fabric, sites, bucket=bucket, policy=policy, meta=meta) as store,
    ):
        yield sites, fabric, store


async def kill(sites: Sites, name: str, *, wipe: bool = False) -> None:
    server = sites[name].server
    assert server is not None
    await server.kill()
    if wipe:  # a site replaced: its store is gone
        shutil.rmtree(server.store_dir, ignore_errors=True)


async def revive(sites: Sites, name: str) -> None:
    server = sites[name].server
    assert server is not None
    await server.start()
    await sites.wait_linked(name)


async def corrupt(fabric: Fabric, store: Storage, fragment: Fragment, at: int = 0) -> None:
    """Flip one byte of a stored fragment (the manifest keeps its true checksum)."""
    site = FragmentSite(fabric, fragment.site, fragment.site, store.bucket)
    data = await site.get(fragment.key)
    assert data is not None
    flipped = bytearray(data)
    flipped[at % len(flipped)] ^= 0x01
    await site.put(fragment.key, bytes(flipped))


async def raw(fabric: Fabric, store: Storage, fragment: Fragment) -> bytes | None:
    return await FragmentSite(fabric, fragment.site, fragment.site, store.bucket).get(fragment.key)
