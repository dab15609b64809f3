"""A pool's minimum, raised and lowered at runtime: :func:`scale_pool` and the controller's side.

A running :class:`~diaspora.compute.PoolController` with a fabric serves
``diaspora.control.poolscale.<pool>``. A request names a site, who asks
(``by``: a monitor's alert, say) and how many workers it wants over the
site's declared minimum (``extra``; ``0`` withdraws the request). Each
asker's request replaces its previous one, so asking twice (a replay after
a restart) has one effect; the site wants its declared minimum plus every
asker's ``extra``, within its ``max``. The controller starts the missing
workers at its next round and, once a site wants fewer workers than it
runs, stops its idle ones (no actors), newest first. Each request is a
:class:`~diaspora.events.Scaled` event, each stopped worker a
:class:`~diaspora.events.Retired` one.

>>> scale_subject("recon")
'diaspora.control.poolscale.recon'
>>> s = PoolScale({"hpc": (1, 4)})
>>> s.ask("hpc", "monitor backlog", 2), s.wants({"hpc": 1})
(3, {'hpc': 3})
>>> s.ask("hpc", "monitor backlog", 0), s.wants({"hpc": 1})
(1, {'hpc': 1})
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from diaspora.errors import ControlError
from diaspora.fabric._control import control_request

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["PoolScale", "scale_pool", "scale_subject"]

_TIMEOUT: Final = 10.0


def scale_subject(pool: str) -> str:
    """The control subject pool ``pool``'s controller takes scale requests on."""
    return f"diaspora.control.poolscale.{pool}"


async def scale_pool(
    fabric: Fabric,
    pool: str,
    site: str,
    extra: int,
    *,
    by: str,
    request: str | None = None,
    timeout: float = _TIMEOUT,
) -> int:
    """Ask pool ``pool`` for ``extra`` workers over ``site``'s declared minimum on behalf of
    ``by`` (``0``: withdraw ``by``'s request); the site's minimum now.

    ``request`` is the request's id (the controller answers a repeated id once).
    Raises :class:`~diaspora.errors.ControlError` naming the subject when the pool
    does not run or refuses (an unknown site, a negative count).

    Example::

        want = await scale_pool(fabric, "recon", "hpc", 2, by="monitor backlog")
        ...
        await scale_pool(fabric, "recon", "hpc", 0, by="monitor backlog")
    """
    answer = await control_request(
        fabric,
        scale_subject(pool),
        {"site": site, "by": by, "extra": extra, "request": request or uuid.uuid4().hex},
        timeout=timeout,
        nobody=f"the controller of pool {pool!r} (a pool-{pool} child of a running tree)",
    )
    return int(answer["want"])


class PoolScale:
    """The runtime requests over a pool's declared minimums (``quotas``: site -> (min, max))."""

    def __init__(self, quotas: Mapping[str, tuple[int, int]]) -> None:
        self.quotas = dict(quotas)
        self.extra: dict[str, dict[str, int]] = {site: {} for site in quotas}
        self.touched: set[str] = set()  # sites scaled at runtime: they retire idle workers

    def ask(self, site: str, by: str, extra: int) -> int:
        """Record ``by``'s request; the site's minimum now (``ControlError`` if it is bad)."""
        if site not in self.quotas:
            sites = ", ".join(self.quotas)
            raise ControlError(f"{site!r} is not a site of the pool (sites: {sites})")
        if extra < 0:
            raise ControlError(f"extra: {extra!r} must be a whole number of workers >= 0")
        if extra:
            self.extra[site][by] = extra
        else:
            self.extra[site].pop(by, None)
        low, high = self.quotas[site]
        return min(high, low + sum(self.extra[site].values()))

    def wants(self, base: Mapping[str, int]) -> dict[str, int]:
        """``base`` (the spec's wants) with each site's requests added, within its max."""
        out = {}
        for site, want in base.items():
            extra = sum(self.extra.get(site, {}).values())
            out[site] = min(self.quotas[site][1], want + extra) if extra else want
        return out

    def answer(self, request: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, str, int]]:
        """The answer to a control request, and what it asked (site, by, extra)."""
        site, by, extra = str(request.get("site")), str(request.get("by")), request.get("extra")
        if isinstance(extra, bool) or not isinstance(extra, int):
            raise ControlError(f"extra: {extra!r} must be a whole number of workers >= 0")
        want = self.ask(site, by, extra)
        self.touched.add(site)
        return {"ok": True, "want": want}, (site, by, extra)
