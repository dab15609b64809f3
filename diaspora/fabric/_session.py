"""The publisher's session connections: one nats-py client each, never reconnecting.

See :mod:`diaspora.fabric._publisher` for why a session dies with its socket.
"""

from __future__ import annotations

import contextlib

import anyio
from nats.aio.client import Client as NATS

from diaspora.fabric import _jsapi

__all__ = ["Session", "SessionClient", "ignore_error"]


class SessionClient(NATS):
    """A nats-py client that finishes closing when its socket dies with data pending.

    nats-py (2.x) flushes pending data while closing a non-reconnecting client
    after a read error; on a reset socket that flush raises from the client's
    own read task, which leaves the close half done (no callbacks) and the
    error unhandled. The pending data is dropped before the flush, so closing
    again completes the close; the session was dead either way.
    """

    async def _process_op_err(self, e: Exception) -> None:
        try:
            await super()._process_op_err(e)
        except OSError:
            await self._close(NATS.CLOSED, True)


async def ignore_error(exc: Exception) -> None:
    """Session errors surface as a dead session; nats-py's default handler would only log."""


class Session:
    """One publishing connection that never reconnects; dead once it drops."""

    def __init__(self, nc: NATS, prefix: str) -> None:
        self.nc = nc
        self.prefix = prefix
        self.dead = False
        self.probes = 0
        self.answered: anyio.Event | None = None

    async def probe(self, timeout: float) -> bool:
        """Whether the server answers a JetStream API request within ``timeout``.

        nats-py's ``flush(timeout)`` is not used: a PONG arriving after its
        timeout kills the client's read loop, leaving a connection that looks
        alive but never delivers another acknowledgement.
        """
        self.probes += 1
        answered = self.answered = anyio.Event()
        await self.nc.publish(_jsapi.info_subject(), b"", reply=f"{self.prefix}.probe{self.probes}")
        with anyio.move_on_after(timeout):
            await answered.wait()
        return answered.is_set()

    async def close(self) -> None:
        self.dead = True
        with contextlib.suppress(Exception), anyio.move_on_after(2):
            await self.nc.close()
