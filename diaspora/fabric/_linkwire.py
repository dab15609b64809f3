"""The bytes on a proxied link: delay lines, the rate cap, and one proxied connection.

The parts :class:`~diaspora.fabric.LinkProxy` is built of; nothing here knows
about faults, only about holding, pacing and aborting bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Final

import anyio

#: Bytes held per direction per connection before the proxy stops reading (TCP backpressure).
HELD_LIMIT: Final = 8 * 1024 * 1024
#: Token-bucket depth, in seconds of the configured rate.
BURST_S: Final = 0.05


class Direction(Enum):
    TO_SERVER = "to_server"
    TO_CLIENT = "to_client"


@dataclass(slots=True)
class Counters:
    bytes_to_server: int = 0
    bytes_to_client: int = 0
    connections_accepted: int = 0
    connections_open: int = 0
    connections_reset: int = 0


@dataclass(frozen=True, slots=True)
class Chunk:
    data: bytes
    arrived: float  # loop time when the proxy read it
    jitter: float  # this chunk's draw in [0, 1), scaled by the jitter in force when it leaves


class DelayLine:
    """The bytes in flight one way on one connection, in order; bounded in bytes."""

    def __init__(self) -> None:
        self._chunks: deque[Chunk] = deque()
        self._held = 0
        self._eof = False
        self._changed = anyio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def put(self, chunk: Chunk) -> None:
        while self._held >= HELD_LIMIT:
            await self._changed.wait()
        self._chunks.append(chunk)
        self._held += len(chunk.data)
        self._wake()

    def close(self) -> None:
        self._eof = True
        self._wake()

    async def get(self) -> Chunk | None:
        """The next chunk, or ``None`` once the source has ended and all was taken."""
        while not self._chunks:
            if self._eof:
                return None
            await self._changed.wait()
        chunk = self._chunks.popleft()
        self._held -= len(chunk.data)
        self._wake()
        return chunk


class TokenBucket:
    """A byte-rate cap shared by every connection's traffic in one direction."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self._tokens = 0.0
        self._stamp = 0.0

    def set_rate(self, rate: float | None, now: float) -> None:
        self.rate = rate
        self._tokens = self._capacity()
        self._stamp = now

    def _capacity(self) -> float:
        return max(1.0, (self.rate or 0.0) * BURST_S)

    def take(self, wanted: int, now: float) -> tuple[int, float]:
        """How many of ``wanted`` bytes may go now; if none, when to ask again."""
        rate = self.rate
        if rate is None:
            return wanted, now
        capacity = self._capacity()
        self._tokens = min(capacity, self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        need = min(wanted, int(capacity))
        if self._tokens >= need:
            self._tokens -= need
            return need, now
        # a hair late rather than early, so the retry finds the tokens there
        return 0, now + (need - self._tokens) / rate + 1e-4


def arm_rst(writer: asyncio.StreamWriter | None, sock: socket.socket | None = None) -> None:
    """Make the next close of this socket send RST instead of FIN (SO_LINGER 0)."""
    raw = writer.get_extra_info("socket") if writer is not None else sock
    if raw is None:
        return
    with contextlib.suppress(OSError):  # already closed: nothing to reset
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Connection:
    """One proxied client connection: its two sockets and the scope its pumps run in."""

    def __init__(self, client: socket.socket) -> None:
        self.client_sock = client
        self.client: asyncio.StreamWriter | None = None
        self.server: asyncio.StreamWriter | None = None
        self.scope = anyio.CancelScope()
        self.closed_cleanly = False

    def abort(self) -> None:
        """Reset both sides now and stop the pumps."""
        arm_rst(self.client, self.client_sock)
        arm_rst(self.server)
        self.close_now()
        self.scope.cancel()

    def close_now(self) -> None:
        # Before its transport exists the client socket is left alone: closing it here
        # would free its fd while asyncio may be registering a transport on it (the
        # next socket would get the fd and asyncio refuse it). ``_serve`` creates the
        # transport shielded from cancellation and aborts through it.
        if self.client is not None:
            self.client.transport.abort()
        if self.server is not None:
            self.server.transport.abort()
