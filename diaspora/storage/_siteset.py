"""The sites a storage bucket spreads over: their fragment streams and what was measured of them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import anyio

from diaspora.errors import ConfigError, FabricUnavailable
from diaspora.events import SiteUnreachable
from diaspora.fabric import Fabric
from diaspora.fabric._fragments import FragmentSite
from diaspora.log import get_logger
from diaspora.storage._health import SiteHealth

__all__ = ["SiteSet"]


class SiteSet:
    """Each site's :class:`FragmentSite` and :class:`SiteHealth`; every call timed and recorded.

    ``sites`` maps a site name to its JetStream domain; ``here`` is the site
    the fabric is connected to (read first while its latency is unknown).
    A failed call marks its site down for ``retry_after`` seconds (ordered
    last, not written to) and re-raises :class:`FabricUnavailable`.
    """

    def __init__(
        self,
        fabric: Fabric,
        sites: Mapping[str, str],
        bucket: str,
        *,
        here: str | None = None,
        timeout: float | None = None,
        retry_after: float = 2.0,
    ) -> None:
        if not sites:
            raise ConfigError(f"storage bucket {bucket!r}: sites: name at least one site")
        if here is not None and here not in sites:
            raise ConfigError(f"storage bucket {bucket!r}: here={here!r} is not one of its sites")
        self.names = list(sites)
        self.fabric, self.bucket = fabric, bucket
        self.retry_after = retry_after
        self.frag = {
            name: FragmentSite(fabric, name, domain, bucket, timeout=timeout)
            for name, domain in sites.items()
        }
        self.health = {
            name: SiteHealth(name, bias=0.0 if name == here else 0.0005) for name in sites
        }
        self._log = get_logger(storage=bucket)

    def ranked(self, sites: Iterable[str] | None = None) -> list[str]:
        """``sites`` (default all) fastest first, down ones last."""
        return sorted(self.names if sites is None else sites, key=lambda s: self.health[s].score())

    def up(self) -> list[str]:
        """The sites not marked down, fastest first."""
        return [s for s in self.ranked() if not self.health[s].down]

    async def failed(self, site: str, exc: Exception) -> None:
        """Mark ``site`` down for a while; a :class:`SiteUnreachable` event if it was up."""
        was_up = not self.health[site].down
        self.health[site].failed(retry_after=self.retry_after)
        self.frag[site].forget()  # it may come back replaced, without its stream
        if was_up:
            error = str(exc)[:200]
            await self.fabric.emit(SiteUnreachable(name=self.bucket, site=site, error=error))

    async def put(self, site: str, key: str, data: bytes) -> None:
        started = time.monotonic()
        try:
            await self.frag[site].ensure()
            await self.frag[site].put(key, data)
        except FabricUnavailable as exc:
            await self.failed(site, exc)
            raise
        self.health[site].ok(time.monotonic() - started, len(data), wrote=True)

    async def get(self, site: str, key: str) -> bytes | None:
        started = time.monotonic()
        self.health[site].asked += 1
        try:
            data = await self.frag[site].get(key)
        except FabricUnavailable as exc:
            await self.failed(site, exc)
            raise
        except anyio.get_cancelled_exc_class():
            # a late-binding read no longer needed it: it lost the race, so it counts as twice
            # as slow as it was thought to be (a site that keeps losing drifts to the back;
            # one that wins gets its measured latency back)
            health = self.health[site]
            elapsed = time.monotonic() - started
            health.ok(2 * max(elapsed, health.latency or 0.0), 0)
            raise
        self.health[site].ok(time.monotonic() - started, len(data or b""))
        return data

    async def delete(self, site: str, pattern: str) -> bool:
        """Drop fragments matching ``pattern`` at ``site``; ``False`` if the site did not answer."""
        try:
            await self.frag[site].delete(pattern)
        except FabricUnavailable as exc:
            await self.failed(site, exc)
            return False
        return True

    async def keys(self, site: str, pattern: str = ">") -> list[str]:
        try:
            return await self.frag[site].keys(pattern)
        except FabricUnavailable as exc:
            await self.failed(site, exc)
            raise
