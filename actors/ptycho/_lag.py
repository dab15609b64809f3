"""The uplink's lag and delay, measured where the patterns land: :class:`BridgeLag`."""

from __future__ import annotations

import time
from typing import Any

import anyio

from diaspora import Actor
from diaspora.errors import FabricUnavailable, StreamNotFound
from diaspora.fabric import get_many
from diaspora.fabric import headers as H

__all__ = ["LAG", "BridgeLag"]

LAG = "ptycho.uplink_lag"


class BridgeLag(Actor):
    """At a bridge's receiving site, every ``period`` s: how late ``subject``'s copy is.

    Emits on ``to`` (the stream the monitors ``uplink_lag`` and ``uplink_delay``
    watch, ``supervisors/ptychography.toml``) a record ``{"t", ...}`` with

    - ``delay``: seconds from the producer's emit to the local store of the
      newest copy (its ``Diaspora-Emitted-At`` against its stored time), when
      a copy arrived since the last round. Read locally, so it is measured
      under congestion too: a congested link delivers late, not never. (It
      compares two hosts' clocks: keep them in sync, NTP's milliseconds are
      plenty.) A round with no new copy while copies are due reports the
      seconds since the last copy came instead, a lower bound of the next
      one's delay: a congested link can stall the bridge itself for seconds
      (its source consumer waits on flow control and heartbeats), and a
      stalled bridge is late, not idle. Copies are due when the origin was
      last seen ahead (``lag`` > 0), or when it did not answer in time while
      the link is up (congested: the request timed out; across a cut link
      it has no responders at once). Measured on the twin: at 45 kB/s, no
      copy came for 16 s while every request across the link timed out.
    - ``lag``, ``origin``, ``copy``: how many messages the origin (JetStream
      domain ``origin``) holds that the copy does not yet, when the origin
      answers within the period. Its request crosses the link, so a cut or
      congested link leaves it out (unknown, not zero).

    A round that measures neither emits nothing.

    >>> BridgeLag.outputs
    ('ptycho.uplink_lag',)
    """

    outputs = (LAG,)

    def __init__(
        self, subject: str = "ptycho.diff", origin: str = "edge", period: float = 1.0, to: str = LAG
    ) -> None:
        if period <= 0:
            raise ValueError(f"BridgeLag: period ({period}) must be > 0 seconds")
        self.subject, self.origin, self.period, self.to = subject, origin, period, to
        self._copied = 0  #: the copy's last sequence at the last round
        self._arrived = time.time()  #: stored time of the newest copy
        self._behind = False  #: the origin was ahead of the copy when last asked

    async def _delay(self, record: dict[str, Any]) -> int | None:
        """Put the newest copy's delay into ``record``; the copy's last sequence."""
        _, copy = await self.fabric.stream_bounds(self.subject)
        if copy > self._copied:
            newest = (await get_many(self.fabric, self.subject, [copy])).get(copy)
            emitted = None if newest is None else newest.headers.get(H.EMITTED_AT)
            if newest is not None and emitted is not None:
                record["delay"] = round(max(0.0, newest.timestamp - float(emitted)), 4)
                self._arrived = newest.timestamp
        elif self._behind:  # copies are due and none came: stalled for this long at least
            record["delay"] = round(max(0.0, time.time() - self._arrived), 4)
        self._copied = copy
        return copy

    async def produce(self) -> None:
        while not self.stopping:
            began = time.monotonic()
            record: dict[str, Any] = {"t": time.time()}
            copy = None
            try:
                copy = await self._delay(record)
                with anyio.fail_after(self.period):
                    _, origin = await self.fabric.stream_bounds(self.subject, domain=self.origin)
                record.update(lag=max(0, origin - copy), origin=origin, copy=copy)
                self._behind = origin > copy
            except TimeoutError:  # the link is up but slow: copies may be due
                self._behind = copy is not None
                self.log.debug("lag_unknown", subject=self.subject, copy=copy, error="timeout")
            except (FabricUnavailable, StreamNotFound) as exc:
                self.log.debug("lag_unknown", subject=self.subject, copy=copy, error=repr(exc))
            if len(record) > 1:
                await self.emit(self.to, record)
            await anyio.sleep(max(0.0, self.period - (time.monotonic() - began)))
