"""What a storage client has measured of each site: latency, bandwidth, failures.

Reads go to the sites with the lowest measured latency first; a site that
failed is tried last (and not written to) for ``retry_after`` seconds.

>>> h = SiteHealth("a")
>>> h.ok(0.010, 1_000_000); h.ok(0.020, 1_000_000)
>>> round(h.latency, 4), h.down
(0.012, False)
>>> h.failed(now=100.0, retry_after=5.0); h.is_down(now=101.0), h.is_down(now=106.0)
(True, False)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Final

__all__ = ["SiteHealth"]

#: Weight of the newest sample in the moving averages.
_ALPHA: Final = 0.2


@dataclass(slots=True)
class SiteHealth:
    """Moving averages of one site's fragment reads and writes."""

    site: str
    #: Seconds per fragment operation (``None``: not measured yet).
    latency: float | None = None
    #: Bytes per second of fragment transfers (``None``: not measured yet).
    bandwidth: float | None = None
    down_until: float = 0.0
    failures: int = 0
    #: Fragment reads asked of the site (completed or not).
    asked: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    #: Added to the latency when ordering sites (0 for the site the client is at).
    bias: float = 0.0

    def ok(self, seconds: float, nbytes: int, *, wrote: bool = False) -> None:
        """Record a fragment operation that took ``seconds`` and moved ``nbytes``."""
        self.latency = (
            seconds if self.latency is None else ((1 - _ALPHA) * self.latency + _ALPHA * seconds)
        )
        if nbytes >= 64 * 1024 and seconds > 0:
            rate = nbytes / seconds
            self.bandwidth = (
                rate if self.bandwidth is None else ((1 - _ALPHA) * self.bandwidth + _ALPHA * rate)
            )
        if wrote:
            self.bytes_written += nbytes
        else:
            self.bytes_read += nbytes
        self.down_until = 0.0

    def failed(self, *, now: float | None = None, retry_after: float = 2.0) -> None:
        """Record a failure: the site is ordered last for ``retry_after`` seconds."""
        self.failures += 1
        self.down_until = (time.monotonic() if now is None else now) + retry_after

    def is_down(self, *, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.down_until

    @property
    def down(self) -> bool:
        """Whether the site failed within its ``retry_after``."""
        return self.is_down()

    def score(self) -> float:
        """Lower is better: down sites last, then by measured latency (unmeasured: early)."""
        if self.down:
            return math.inf
        return (self.latency if self.latency is not None else 0.001) + self.bias
