"""Sites and their links: up, degraded or down, with RTT, throughput and pending bytes.

The events say what was done to a link (``link`` events: a fault put on a
site's link, then lifted) and what a pool saw of a site (``deficit``,
``healed``, ``site_degraded``); a server's monitoring port says what only it
knows: each leaf link's round-trip time and bytes moved (``leafz``), and
its connections' pending bytes (``connz``). :class:`Sites` folds both.

>>> from diaspora.events import LinkFaulted, LinkHealed
>>> sites = Sites()
>>> sites.apply(LinkFaulted(name="edge", fault="cut_link", duration=2.0), 5.0)
>>> sites.rows["edge"].state
'down'
>>> sites.apply(LinkHealed(name="edge", fault="cut_link", by="timer"), 7.0)
>>> sites.rows["edge"].state
'up'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from diaspora.events import Deficit, Event, Healed, LinkFaulted, LinkHealed, Placed, SiteDegraded

__all__ = ["SiteRow", "Sites", "parse_rtt"]

#: Faults that leave a link carrying nothing; the others slow it down.
_DOWN_FAULTS: Final = frozenset({"cut_link", "blackhole"})
_RTT: Final = re.compile(r"^([\d.]+)(ns|µs|us|ms|s)$")
_RTT_UNIT: Final = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_rtt(text: str) -> float | None:
    """Milliseconds of a nats-server RTT (``"1.234ms"``, ``"850µs"``, ``"1m2s"`` is ``None``).

    >>> parse_rtt("850µs"), parse_rtt("2.5ms")
    (0.85, 2.5)
    """
    match = _RTT.match(text.strip())
    if match is None:
        return None
    return float(match.group(1)) * _RTT_UNIT[match.group(2)]


@dataclass(slots=True)
class SiteRow:
    """One site: its link's state and numbers (``None``: not known)."""

    name: str
    faults: dict[str, str] = field(default_factory=dict)
    linked: bool | None = None  # whether a monitored server sees its leaf link
    rtt_ms: float | None = None
    in_bytes_per_s: float | None = None
    out_bytes_per_s: float | None = None
    pending_bytes: int | None = None
    workers: str | None = None
    updated: float = 0.0
    _bytes: tuple[float, int, int] | None = None

    @property
    def state(self) -> str:
        if any(f in _DOWN_FAULTS for f in self.faults) or self.linked is False:
            return "down"
        if self.faults:
            return "degraded"
        return "up"

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "faults": dict(self.faults),
            "linked": self.linked,
            "rtt_ms": self.rtt_ms,
            "in_bytes_per_s": _round(self.in_bytes_per_s),
            "out_bytes_per_s": _round(self.out_bytes_per_s),
            "pending_bytes": self.pending_bytes,
            "workers": self.workers,
            "updated": self.updated,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class Sites:
    """The rows of the sites seen (see the module docstring)."""

    def __init__(self) -> None:
        self.rows: dict[str, SiteRow] = {}

    def row(self, name: str) -> SiteRow:
        row = self.rows.get(name)
        if row is None:
            row = self.rows[name] = SiteRow(name=name)
        return row

    def apply(self, event: Event, at: float) -> None:
        """Fold one event (emitted at Unix time ``at``)."""
        if event.category not in ("link", "pool"):
            return
        if isinstance(event, LinkFaulted):
            row = self.row(event.name)
            detail = [f"{k}={v}" for k, v in event.fields().items() if k != "fault" and v]
            row.faults[event.fault] = " ".join(detail)
        elif isinstance(event, LinkHealed):
            row = self.row(event.name)
            if event.fault in ("all", "heal_link", "heal"):
                row.faults.clear()
            row.faults.pop(event.fault, None)
        elif isinstance(event, Deficit | Healed):
            row = self.row(event.site)
            row.workers = f"{event.have}/{event.want}"
        elif isinstance(event, SiteDegraded):
            row = self.row(event.site)
            row.workers = f"degraded: {event.reason}"
        elif isinstance(event, Placed):
            row = self.row(event.site)
        else:
            return
        row.updated = at

    def leafz(self, answer: Mapping[str, Any], at: float) -> None:
        """Take a server's ``/leafz`` answer: each leaf link's RTT and byte rates.

        A leaf is named by its remote server's name; a site's server is named
        after the site (``Sites`` does so), so the row is the site's.
        """
        seen = set()
        for leaf in answer.get("leafs") or []:
            name = str(leaf.get("name") or leaf.get("account") or "?")
            seen.add(name)
            row = self.row(name)
            row.linked = True
            row.rtt_ms = parse_rtt(str(leaf.get("rtt", "")))
            in_b, out_b = int(leaf.get("in_bytes", 0)), int(leaf.get("out_bytes", 0))
            last = row._bytes
            if last is not None and at > last[0] and in_b >= last[1] and out_b >= last[2]:
                row.in_bytes_per_s = (in_b - last[1]) / (at - last[0])
                row.out_bytes_per_s = (out_b - last[2]) / (at - last[0])
            row._bytes = (at, in_b, out_b)
            pending = leaf.get("pending_bytes", leaf.get("pending"))
            row.pending_bytes = int(pending) if isinstance(pending, int) else row.pending_bytes
            row.updated = at
        for name, row in self.rows.items():
            if row.linked and name not in seen:
                row.linked, row._bytes = False, None
                row.updated = at
