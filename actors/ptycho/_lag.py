"""The uplink's lag, measured where the patterns land: :class:`BridgeLag`."""

from __future__ import annotations

import time

import anyio

from diaspora import Actor
from diaspora.errors import FabricUnavailable, StreamNotFound

__all__ = ["LAG", "BridgeLag"]

LAG = "ptycho.uplink_lag"


class BridgeLag(Actor):
    """At a bridge's receiving site: every ``period`` s, how many messages of ``subject`` its
    origin (in JetStream domain ``origin``) holds that the local copy does not yet.

    Emits ``{"lag", "origin", "copy", "t"}`` on ``to``, the stream a monitor watches
    (``supervisors/ptychography.toml``: the monitor ``uplink_lag``). A round in which either
    side cannot be read (the link is cut, a server restarts) emits nothing: the lag is
    unknown, not zero.

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

    async def produce(self) -> None:
        while not self.stopping:
            try:
                with anyio.fail_after(max(2.0, self.period)):
                    _, origin = await self.fabric.stream_bounds(self.subject, domain=self.origin)
                    _, copy = await self.fabric.stream_bounds(self.subject)
            except (FabricUnavailable, StreamNotFound, TimeoutError) as exc:
                self.log.debug("lag_unknown", subject=self.subject, error=repr(exc))
            else:
                lag = max(0, origin - copy)
                await self.emit(
                    self.to, {"lag": lag, "origin": origin, "copy": copy, "t": time.time()}
                )
            await anyio.sleep(self.period)
