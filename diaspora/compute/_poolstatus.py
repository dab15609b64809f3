"""What a pool looks like now: the record its controller keeps, and ``diaspora status``.

A controller given a fabric (a pool in a workflow file: its root's) writes
its pool's state into the KV bucket ``diaspora-pools``, under the pool's
name, whenever it changes (and at least every 5 s, so ``at`` says how fresh
it is): each site's ``min``/``max``, the workers it wants, the workers it
has (``running`` of them), whether it is degraded and why, since when it
has a deficit; each actor's site, worker and home. :func:`read_pools` reads
every pool's record back; :func:`format_pools` makes the lines ``diaspora
status`` prints.

>>> print(format_pools([{
...     "pool": "recon", "provider": "process", "total_min": 3, "at": 0.0,
...     "sites": {"hpc": {"min": 2, "max": 8, "want": 2, "workers": ["recon-hpc-1"],
...                       "running": 1, "degraded": None, "deficit_s": 1.5}},
...     "actors": {"root.solve": {"site": "hpc", "worker": "recon-hpc-1", "home": "hpc"}},
... }], now=3.0))
pool recon (process): 1 worker(s), total_min 3, updated 3.0 s ago
  site hpc: 1 of 1 running, want 2 (min 2, max 8), deficit for 1.5 s
  actor root.solve: at hpc on recon-hpc-1
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from diaspora import codec
from diaspora.errors import DecodeError

if TYPE_CHECKING:
    from diaspora.fabric import Fabric, KeyValueBucket

__all__ = ["POOLS_BUCKET", "StatusRecord", "format_pools", "read_pools", "show_pools"]

#: KV bucket holding each running pool's state, under the pool's name.
POOLS_BUCKET: Final = "diaspora-pools"
_REFRESH: Final = 5.0


class StatusRecord:
    """Writes one pool's state into ``diaspora-pools`` when it changed (or every 5 s)."""

    def __init__(self, fabric: Fabric, pool: str) -> None:
        self.fabric, self.pool = fabric, pool
        self._kv: KeyValueBucket | None = None
        self._last: dict[str, Any] | None = None
        self._written = 0.0

    async def write(self, state: dict[str, Any]) -> None:
        now = time.monotonic()
        if state == self._last and now - self._written < _REFRESH:
            return
        if self._kv is None:
            self._kv = await self.fabric.ensure_kv(POOLS_BUCKET)
        await self._kv.put(self.pool, codec.encode({**state, "at": time.time()}))
        self._last, self._written = state, now


async def read_pools(fabric: Fabric) -> list[dict[str, Any]]:
    """Every pool's last record in ``fabric``'s ``diaspora-pools`` bucket, by name."""
    kv = await fabric.ensure_kv(POOLS_BUCKET)
    records = []
    for key in sorted(await kv.keys()):
        entry = await kv.get(key)
        if entry is None:
            continue
        try:
            records.append(dict(codec.decode(entry.value)))
        except (DecodeError, TypeError, ValueError):
            continue
    return records


def format_pools(records: Iterable[Mapping[str, Any]], *, now: float | None = None) -> str:
    """The lines ``diaspora status`` prints for ``records`` (see the module's example)."""
    now = time.time() if now is None else now
    lines = []
    for rec in records:
        sites: Mapping[str, Mapping[str, Any]] = rec["sites"]
        workers = sum(len(s["workers"]) for s in sites.values())
        lines.append(
            f"pool {rec['pool']} ({rec['provider']}): {workers} worker(s), "
            f"total_min {rec['total_min']}, updated {now - rec['at']:.1f} s ago"
        )
        for name, site in sites.items():
            line = (
                f"  site {name}: {site['running']} of {len(site['workers'])} running, "
                f"want {site['want']} (min {site['min']}, max {site['max']})"
            )
            if site["degraded"]:
                line += f", degraded ({site['degraded']})"
            if site["deficit_s"] is not None:
                line += f", deficit for {site['deficit_s']:.1f} s"
            lines.append(line)
        for actor, where in rec["actors"].items():
            on = f"on {where['worker']}" if where["worker"] else "waiting for a worker"
            away = f" (home {where['home']})" if where["home"] != where["site"] else ""
            lines.append(f"  actor {actor}: at {where['site']}{away} {on}")
    return "\n".join(lines) if lines else "no pools"


async def show_pools(url: str | None, *, as_json: bool = False) -> int:
    """``diaspora status``: print every pool's state (``as_json``: one record a line)."""
    from diaspora.fabric import Fabric

    async with Fabric(url, name="status") as fabric:
        records = await read_pools(fabric)
    if as_json:
        for record in records:
            print(json.dumps(record))
    else:
        print(format_pools(records))
    return 0
