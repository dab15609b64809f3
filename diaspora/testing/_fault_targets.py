"""What an Injector breaks besides actors: the nats-server and the client's link to it.

:class:`ServerFaults` kills, restarts, pauses and resumes an
:class:`~diaspora.fabric.EmbeddedServer`, one change at a time (under its
lock); :func:`apply_link_fault` degrades or cuts a
:class:`~diaspora.testing.LinkProxy` and :func:`lift_link_aspect` ends one
aspect of it while keeping the others in force. The
:class:`~diaspora.testing.Injector` composes them and keeps the records.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from diaspora.errors import InjectionError
from diaspora.fabric import EmbeddedServer, LinkProxy, ServerState
from diaspora.testing._faultspec import FaultKind, FaultSpec, Injected

__all__ = ["ServerFaults", "apply_link_fault", "lift_link_aspect"]


class ServerFaults:
    """Server faults, serialised: a kill, restart, pause or resume never overlaps another."""

    def __init__(self) -> None:
        self._lock = anyio.Lock()

    async def apply(
        self, server: EmbeddedServer, fault: FaultSpec, lift: Callable[[str], None]
    ) -> None:
        """Carry out a server ``fault``; ``lift(aspect)`` marks a lasting fault it ends as over."""
        kind = fault.kind
        async with self._lock:
            state = server.state
            if kind is FaultKind.KILL_SERVER:
                if state not in (ServerState.RUNNING, ServerState.PAUSED):
                    raise InjectionError(f"{fault.describe()}: the server is {state.value}")
                await server.kill()
                lift("server_paused")
            elif kind is FaultKind.RESTART_SERVER:
                if state in (ServerState.KILLED, ServerState.STOPPED, ServerState.NEW):
                    await server.start()
                else:
                    await server.restart()
                lift("server_down")
                lift("server_paused")
            elif kind is FaultKind.PAUSE_SERVER:
                if state is not ServerState.RUNNING:
                    raise InjectionError(f"{fault.describe()}: the server is {state.value}")
                server.pause()
            elif kind is FaultKind.RESUME_SERVER:
                if state is ServerState.PAUSED:
                    server.resume()
                lift("server_paused")

    async def lift(self, server: EmbeddedServer, aspect: str) -> None:
        """End the lasting fault ``aspect`` (``server_down`` or ``server_paused``)."""
        async with self._lock:
            if aspect == "server_down" and server.state in (
                ServerState.KILLED,
                ServerState.STOPPED,
            ):
                await server.start()
            elif aspect == "server_paused" and server.state is ServerState.PAUSED:
                server.resume()

    async def heal(self, server: EmbeddedServer) -> None:
        """Resume the server if paused, start it if down."""
        async with self._lock:
            if server.state is ServerState.PAUSED:
                server.resume()
            if server.state in (ServerState.KILLED, ServerState.STOPPED):
                await server.start()


def apply_link_fault(proxy: LinkProxy, fault: FaultSpec) -> None:
    """Carry out a link ``fault`` on ``proxy``."""
    kind = fault.kind
    if kind is FaultKind.LATENCY:
        assert fault.seconds is not None
        proxy.set_latency(fault.seconds, fault.jitter)
    elif kind is FaultKind.BANDWIDTH:
        proxy.set_bandwidth(fault.rate)
    elif kind is FaultKind.RESET_LINK:
        proxy.reset()
    elif kind is FaultKind.BLACKHOLE:
        proxy.blackhole(fault.duration)
    elif kind is FaultKind.CUT_LINK:
        proxy.cut()
    elif kind is FaultKind.HEAL_LINK:
        proxy.heal()


def lift_link_aspect(
    proxy: LinkProxy, aspect: str, in_force: Callable[[str], Injected | None]
) -> None:
    """End one link aspect; the others ``in_force`` stay (heal() clears all, so re-apply)."""
    if aspect == "latency":
        proxy.set_latency(0.0)
    elif aspect == "bandwidth":
        proxy.set_bandwidth(None)
    elif aspect == "cut":
        proxy.heal()
        for other in ("latency", "bandwidth"):
            record = in_force(other)
            if record is not None:
                fault = record.fault
                if other == "latency":
                    assert fault.seconds is not None
                    proxy.set_latency(fault.seconds, fault.jitter)
                else:
                    proxy.set_bandwidth(fault.rate)
        blackhole = in_force("blackhole")
        if blackhole is not None:
            ends = blackhole.at + (blackhole.fault.duration or 0.0)
            proxy.blackhole(max(0.0, ends - time.time()))
    # a blackhole ends by the proxy's own timer
