"""What the demo watches while the workflow runs: counts per stage, lag per link, new records.

Everything is read from the streams the workflow writes, with the fabrics of
the sites they live on, never from inside an actor: a :class:`Counter` is a
stream whose last sequence counts a stage's items, a :class:`LinkLag` the
difference between a bridge's origin and its copy, a :class:`Tail` the new
messages of a stream since the last look (decoded), for quality records and
model versions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diaspora import codec
from diaspora.errors import DecodeError, FabricUnavailable, StreamNotFound
from diaspora.fabric import Fabric, read_stored
from diaspora.log import get_logger

__all__ = ["Counter", "LinkLag", "Observer", "Sample", "Tail"]

_log = get_logger()


@dataclass(frozen=True, slots=True)
class Counter:
    """A stage's count: the last sequence of ``subject``'s stream at ``site``."""

    name: str
    site: str
    subject: str


@dataclass(frozen=True, slots=True)
class LinkLag:
    """Items of ``subject`` stored at ``origin`` and not yet at ``copy`` (a bridge's lag)."""

    name: str
    subject: str
    origin: str
    copy: str


@dataclass(slots=True)
class Tail:
    """The new messages of ``subject`` at ``site`` on each :meth:`read` (decoded payloads,
    with their headers and stored time under ``_headers`` and ``_time``)."""

    site: str
    subject: str
    headers_only: bool = False
    next_seq: int = 1
    #: sequences read at most per look (None: to the stream's end; for a pattern over a
    #: shared stream, such as events, whose window may hold no match)
    window: int | None = 2000

    async def read(self, fabric: Fabric) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        end = None if self.window is None else self.next_seq + self.window - 1
        try:
            async for msg in read_stored(
                fabric,
                self.subject,
                start_seq=self.next_seq,
                end_seq=end,
                headers_only=self.headers_only,
            ):
                self.next_seq = msg.seq + 1
                data: Any = {}
                if not self.headers_only:
                    try:
                        data = codec.decode(msg.payload)
                    except DecodeError:
                        data = {}
                record = dict(data) if isinstance(data, Mapping) else {"value": data}
                record["_headers"] = msg.headers
                record["_time"] = msg.timestamp
                record["_seq"] = msg.seq
                out.append(record)
        except (StreamNotFound, FabricUnavailable, TimeoutError) as exc:
            _log.debug("tail_unread", subject=self.subject, site=self.site, error=repr(exc))
        except Exception as exc:  # a server restarting answers "service unavailable": the
            # watcher is best effort and reads on from next_seq at its next look
            _log.info("tail_unread", subject=self.subject, site=self.site, error=repr(exc))
        return out


@dataclass(slots=True)
class Sample:
    """One look at the workflow: seconds since the start, counts, lags (``None``: unknown)."""

    t: float
    counts: dict[str, int | None] = field(default_factory=dict)
    lags: dict[str, int | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 3), "counts": self.counts, "lags": self.lags}


class Observer:
    """Samples counters and lags over ``fabrics`` (site name -> fabric)."""

    def __init__(
        self,
        fabrics: Mapping[str, Fabric],
        counters: tuple[Counter, ...],
        lags: tuple[LinkLag, ...],
        *,
        started: float | None = None,
    ) -> None:
        self.fabrics = fabrics
        self.counters = counters
        self.lag_specs = lags
        self.started = time.monotonic() if started is None else started
        self.samples: list[Sample] = []

    async def _last(self, site: str, subject: str) -> int | None:
        try:
            return (await self.fabrics[site].stream_bounds(subject))[1]
        except (StreamNotFound, FabricUnavailable, TimeoutError):
            return None

    async def sample(self) -> Sample:
        sample = Sample(time.monotonic() - self.started)
        for counter in self.counters:
            sample.counts[counter.name] = await self._last(counter.site, counter.subject)
        for lag in self.lag_specs:
            origin = await self._last(lag.origin, lag.subject)
            copy = await self._last(lag.copy, lag.subject)
            sample.lags[lag.name] = (
                None if origin is None or copy is None else max(0, origin - copy)
            )
        self.samples.append(sample)
        return sample

    def rates(self) -> dict[str, list[tuple[float, float]]]:
        """Items per second of each counter between consecutive samples."""
        out: dict[str, list[tuple[float, float]]] = {c.name: [] for c in self.counters}
        for before, after in zip(self.samples, self.samples[1:], strict=False):
            dt = after.t - before.t
            for name in out:
                a, b = before.counts.get(name), after.counts.get(name)
                if a is not None and b is not None and dt > 0:
                    out[name].append((after.t, max(0, b - a) / dt))
        return out
