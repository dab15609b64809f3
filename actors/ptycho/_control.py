"""What the monitors tell the edge: :class:`EdgeControl`, at the HPC site."""

from __future__ import annotations

import time
from typing import Any

from diaspora import Actor, Message
from diaspora.events import MonitorResolved, MonitorWarning, events_input

__all__ = ["CONTROL", "EdgeControl"]

CONTROL = "ptycho.control"


class EdgeControl(Actor):
    """Turns the monitors' alerts into orders for the edge, on ``to`` (bridged down to it).

    Reads the monitor events (category ``monitor``) at the HPC site. While any
    of the monitors ``uplink`` (the uplink's lag, its delay) warns, the edge
    thins what it sends
    up to 1 frame in ``decimate``; while the monitor ``drift`` (the CNN's
    error against ePIE) warns, the edge holds back from inferring and sends
    every frame up. Each order is the whole wanted state, ``{"decimate",
    "hold", "by", "alert", "t"}``, emitted when it changes: an order
    replayed after a restart (this actor's or the edge's) says the same.

    >>> EdgeControl.outputs, EdgeControl().decision()
    (('ptycho.control',), {'decimate': 1, 'hold': False})
    """

    inputs = (events_input("monitor"),)
    outputs = (CONTROL,)
    checkpoint_every = 1

    def __init__(
        self,
        uplink: str | list[str] = ("uplink_lag", "uplink_delay"),
        drift: str = "edge_drift",
        decimate: int = 2,
        to: str = CONTROL,
    ) -> None:
        if decimate < 2:
            raise ValueError(f"EdgeControl: decimate ({decimate}) must be >= 2 (1 frame in k)")
        self.uplink = (uplink,) if isinstance(uplink, str) else tuple(uplink)
        self.drift, self.decimate, self.to = drift, decimate, to
        #: per monitor: the keys it warns about now
        self.warned: dict[str, set[str]] = {}

    def decision(self) -> dict[str, Any]:
        """The orders the current alerts call for."""
        return {
            "decimate": self.decimate if any(self.warned.get(m) for m in self.uplink) else 1,
            "hold": bool(self.warned.get(self.drift)),
        }

    async def handle(self, msg: Message) -> None:
        event = msg.event
        if not isinstance(event, MonitorWarning | MonitorResolved):
            return  # the monitors' actions, other monitors' kinds
        if event.name not in (*self.uplink, self.drift):
            return
        before = self.decision()
        keys = self.warned.setdefault(event.name, set())
        if isinstance(event, MonitorWarning):
            keys.add(event.key)
        else:
            keys.discard(event.key)
        now = self.decision()
        if now != before:
            by = f"monitor {event.name} {event.kind}"
            self.log.info("edge_order", by=by, **now)
            await self.emit(self.to, {**now, "by": by, "alert": event.alert, "t": time.time()})

    def snapshot(self) -> dict[str, list[str]]:
        return {name: sorted(keys) for name, keys in self.warned.items()}

    def restore(self, state: dict[str, list[str]]) -> None:
        self.warned = {str(name): set(keys) for name, keys in state.items()}
