"""A loopback TCP proxy that injects link faults between NATS clients and a server.

Clients connect to :attr:`LinkProxy.url` instead of the server's; the proxy
forwards every byte both ways and, on demand, delays, throttles, holds, resets
or refuses them. Faults change at runtime, while connections are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import socket
from collections.abc import Iterator
from dataclasses import asdict
from types import TracebackType
from typing import Final, Self

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from diaspora.fabric._linkwire import (
    Chunk,
    Connection,
    Counters,
    DelayLine,
    Direction,
    TokenBucket,
    arm_rst,
)
from diaspora.fabric._server import free_port
from diaspora.log import get_logger

__all__ = ["LinkProxy"]

_LOOPBACK: Final = "127.0.0.1"
#: Largest chunk read from a socket at once.
_CHUNK: Final = 64 * 1024
#: How long a graceful close may take to flush before the socket is aborted.
_CLOSE_TIMEOUT_S: Final = 2.0


class LinkProxy:
    """A loopback TCP proxy in front of ``127.0.0.1:target_port`` that injects link faults.

    >>> import time
    >>> import nats
    >>> from diaspora.fabric import EmbeddedServer
    >>> async def main() -> None:
    ...     async with EmbeddedServer() as server, LinkProxy(server.port) as proxy:
    ...         nc = await nats.connect(proxy.url)
    ...         proxy.set_latency(0.05)      # +50 ms each way
    ...         started = time.monotonic()
    ...         await nc.flush()             # one PING/PONG round trip
    ...         print(time.monotonic() - started >= 0.1)
    ...         proxy.heal()
    ...         await nc.close()
    ...         print(proxy.stats()["connections_accepted"])
    >>> anyio.run(main)
    True
    1
    """

    def __init__(
        self, target_port: int, *, listen_port: int | None = None, seed: int | None = None
    ) -> None:
        self.target_port = target_port
        self.port = listen_port if listen_port is not None else free_port()
        self._random = random.Random(seed)
        self._latency = 0.0
        self._jitter = 0.0
        self._buckets = {d: TokenBucket() for d in Direction}
        self._blackhole_until: float | None = None
        self._accepting = True
        self._rebound: socket.socket | None = None  # bound by reopen/heal, for the accept loop
        self._connections: set[Connection] = set()
        self._counters = Counters()
        self._changed: anyio.Event | None = None
        self._listen_scope: anyio.CancelScope | None = None
        self._tg: TaskGroup | None = None
        self._log = get_logger(link_port=self.port, target_port=target_port)

    @property
    def url(self) -> str:
        """Client URL of the proxy, e.g. ``nats://127.0.0.1:40123``."""
        return f"nats://{_LOOPBACK}:{self.port}"

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise RuntimeError(f"LinkProxy on port {self.port} is already running")
        self._changed = anyio.Event()
        listener = self._bind()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._accept_loop, listener)
        tg.start_soon(self._blackhole_timer)
        self._log.info("link_proxy_started")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, self._tg = self._tg, None
        if tg is None:
            return
        tg.cancel_scope.cancel()
        await tg.__aexit__(None, None, None)
        rebound, self._rebound = self._rebound, None
        if rebound is not None:  # healed just before the end: the loop never took it
            rebound.close()
        self._log.info("link_proxy_stopped", **self.stats())

    # -- faults ---------------------------------------------------------------------

    def set_latency(self, seconds: float, jitter: float = 0.0) -> None:
        """Delay every chunk by ``seconds`` plus up to ``jitter`` more, each way; order kept."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"set_latency: seconds={seconds!r} must be a finite number >= 0")
        if not (jitter >= 0 and math.isfinite(jitter)):
            raise ValueError(f"set_latency: jitter={jitter!r} must be a finite number >= 0")
        self._latency, self._jitter = seconds, jitter
        self._log.info("link_latency", seconds=seconds, jitter=jitter)
        self._notify()

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        """Cap each direction at ``bytes_per_second`` (token bucket); ``None`` lifts the cap."""
        if bytes_per_second is not None and not (
            bytes_per_second > 0 and math.isfinite(bytes_per_second)
        ):
            raise ValueError(
                f"set_bandwidth: bytes_per_second={bytes_per_second!r} must be a finite "
                "number > 0, or None for no cap"
            )
        now = anyio.current_time() if self._changed is not None else 0.0
        for bucket in self._buckets.values():
            bucket.set_rate(bytes_per_second, now)
        self._log.info("link_bandwidth", bytes_per_second=bytes_per_second)
        self._notify()

    def reset(self) -> int:
        """Abort every open connection with a TCP RST; return how many. New ones are accepted."""
        count = self._abort_all()
        self._log.info("link_reset", connections=count)
        return count

    def blackhole(self, seconds: float | None = None) -> None:
        """Hold all bytes both ways (connections stay open) for ``seconds`` or until healed."""
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"blackhole: seconds={seconds!r} must be >= 0, or None for no end")
        now = anyio.current_time() if self._changed is not None else 0.0
        self._blackhole_until = math.inf if seconds is None else now + seconds
        self._log.info("link_blackhole", seconds=seconds)
        self._notify()

    def end_blackhole(self) -> None:
        """End a blackhole now (held bytes flow on); other faults stay."""
        self._blackhole_until = None
        self._log.info("link_blackhole_ended")
        self._notify()

    @contextlib.contextmanager
    def blackholed(self) -> Iterator[None]:
        """Blackhole the link for the duration of a ``with`` block; other faults stay."""
        self.blackhole()
        try:
            yield
        finally:
            self.end_blackhole()

    def cut(self) -> None:
        """A link outage: refuse new connections and reset open ones until :meth:`heal`."""
        self._accepting = False
        if self._listen_scope is not None:
            self._listen_scope.cancel()
        rebound, self._rebound = self._rebound, None
        if rebound is not None:  # healed and cut again before the accept loop took it
            rebound.close()
        count = self._abort_all()
        self._log.info("link_cut", connections=count)
        self._notify()

    def reopen(self) -> None:
        """End a cut: accept connections again; latency, cap and blackhole stay."""
        self._accept_again()
        self._log.info("link_reopened")
        self._notify()

    def heal(self) -> None:
        """Back to a clean link: no latency, no cap, no blackhole, accepting connections."""
        self._latency = self._jitter = 0.0
        for bucket in self._buckets.values():
            bucket.set_rate(None, 0.0)
        self._blackhole_until = None
        self._accept_again()
        self._log.info("link_healed")
        self._notify()

    def stats(self) -> dict[str, int]:
        """Counters: ``bytes_to_server``, ``bytes_to_client``, ``connections_accepted``,
        ``connections_open``, ``connections_reset``."""
        self._counters.connections_open = len(self._connections)
        return asdict(self._counters)

    # -- internals ------------------------------------------------------------------

    def _notify(self) -> None:
        """Wake every task waiting on the fault settings, so it re-reads them."""
        if self._changed is not None:
            self._changed.set()
            self._changed = anyio.Event()

    async def _until(self, deadline: float) -> None:
        """Sleep until ``deadline`` (loop time, may be inf) or the next settings change."""
        assert self._changed is not None
        with anyio.move_on_after(deadline - anyio.current_time()):
            await self._changed.wait()

    def _abort_all(self) -> int:
        connections = list(self._connections)
        self._connections.clear()
        for connection in connections:
            connection.abort()
        self._counters.connections_reset += len(connections)
        return len(connections)

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((_LOOPBACK, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    def _accept_again(self) -> None:
        """Accept connections again; listening at once when the cut's listener is closed."""
        if not self._accepting and self._listen_scope is None and self._rebound is None:
            # the accept loop closed the old listener: bind now, so that a client told
            # "healed" is not refused while the loop gets round to it
            with contextlib.suppress(OSError):  # the loop retries the bind itself
                self._rebound = self._bind()
        self._accepting = True

    async def _listen_again(self) -> socket.socket:
        delay = 0.01
        while True:
            try:
                return self._bind()
            except OSError as exc:
                self._log.warning("link_listen_failed", error=str(exc), retry_s=delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _accept_loop(self, listener: socket.socket) -> None:
        assert self._tg is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                with anyio.CancelScope() as self._listen_scope:
                    while True:
                        sock, _ = await loop.sock_accept(listener)
                        if not self._accepting:  # accepted just as the link was cut
                            arm_rst(None, sock)
                            sock.close()
                            continue
                        self._counters.connections_accepted += 1
                        self._tg.start_soon(self._serve, sock)
            finally:
                self._listen_scope = None
                listener.close()
            # cut: stay closed (connections refused) until healed, then listen again
            while not self._accepting:
                await self._until(math.inf)
            listener, self._rebound = self._rebound or await self._listen_again(), None
            self._log.info("link_listening")

    async def _blackhole_timer(self) -> None:
        """End a timed blackhole when its time is up."""
        while True:
            until = self._blackhole_until
            if until is not None and anyio.current_time() >= until:
                self._blackhole_until = None
                self._log.info("link_blackhole_ended")
                self._notify()
                continue
            await self._until(math.inf if until is None else until)

    async def _serve(self, client_sock: socket.socket) -> None:
        connection = Connection(client_sock)
        self._connections.add(connection)
        self._log.debug("link_connection_opened")
        try:
            with connection.scope:
                with anyio.CancelScope(shield=True):  # see Connection.close_now
                    c_reader, c_writer = await asyncio.open_connection(sock=client_sock)
                connection.client = c_writer
                await anyio.lowlevel.checkpoint()  # aborted meanwhile: stop here
                try:
                    s_reader, s_writer = await asyncio.open_connection(_LOOPBACK, self.target_port)
                except OSError as exc:
                    self._log.warning("link_upstream_failed", error=str(exc))
                    arm_rst(c_writer)  # the client sees a refusal, not a clean close
                    return
                connection.server = s_writer
                if await self._pump(c_reader, c_writer, s_reader, s_writer):
                    connection.closed_cleanly = await self._close_gracefully(c_writer, s_writer)
        except Exception as exc:  # one connection's trouble must never take the proxy down
            self._log.error("link_connection_failed", error=repr(exc))
        finally:
            self._connections.discard(connection)
            if not connection.closed_cleanly:
                connection.close_now()
                if connection.client is None:  # no transport was made: the socket is ours
                    client_sock.close()
            self._log.debug("link_connection_closed", clean=connection.closed_cleanly)

    async def _pump(
        self,
        c_reader: asyncio.StreamReader,
        c_writer: asyncio.StreamWriter,
        s_reader: asyncio.StreamReader,
        s_writer: asyncio.StreamWriter,
    ) -> bool:
        """Forward both ways until both sides have ended; ``False`` if one side broke."""
        try:
            async with anyio.create_task_group() as tg:
                for reader, writer, direction in (
                    (c_reader, s_writer, Direction.TO_SERVER),
                    (s_reader, c_writer, Direction.TO_CLIENT),
                ):
                    line = DelayLine()
                    tg.start_soon(self._read, reader, line)
                    tg.start_soon(self._deliver, line, writer, direction)
        except* OSError as group:
            self._log.debug("link_connection_broken", error=str(group.exceptions[0]))
            # a reset on one side is passed on as a reset to the other
            arm_rst(c_writer)
            arm_rst(s_writer)
            broken = True
        else:
            broken = False
        return not broken

    async def _close_gracefully(self, *writers: asyncio.StreamWriter) -> bool:
        """Close after flushing what is buffered; ``False`` if that failed or took too long."""
        with anyio.move_on_after(_CLOSE_TIMEOUT_S):
            for writer in writers:
                writer.close()
                try:
                    await writer.wait_closed()
                except OSError:
                    return False
            return True
        return False

    async def _read(self, reader: asyncio.StreamReader, line: DelayLine) -> None:
        try:
            while data := await reader.read(_CHUNK):
                await line.put(Chunk(data, anyio.current_time(), self._random.random()))
        finally:
            line.close()

    async def _deliver(
        self, line: DelayLine, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        bucket = self._buckets[direction]
        while (chunk := await line.get()) is not None:
            view = memoryview(chunk.data)
            while view:
                now = anyio.current_time()
                if self._blackhole_until is not None:
                    await self._until(math.inf)  # the timer or heal() wakes us
                    continue
                due = chunk.arrived + self._latency + chunk.jitter * self._jitter
                if now < due:
                    await self._until(due)
                    continue
                granted, retry_at = bucket.take(len(view), now)
                if not granted:
                    await self._until(retry_at)
                    continue
                writer.write(view[:granted])
                view = view[granted:]
                await writer.drain()
                if direction is Direction.TO_SERVER:
                    self._counters.bytes_to_server += granted
                else:
                    self._counters.bytes_to_client += granted
        if writer.can_write_eof():
            writer.write_eof()
