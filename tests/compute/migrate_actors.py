"""A migratable actor, its pure-Python model, and the start function process nodes run.

Module level, so that process nodes pickle them by reference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from diaspora import Actor, ActorRuntime, Message
from diaspora.compute import Migratable, MigratableState
from diaspora.fabric import Fabric
from diaspora.streams import HistorySpec
from diaspora.supervision._context import child_events

IN, OUT = "mig.in", "mig.out"
KEYS, WIDTH = 8, 32


class Counter(Actor):
    """Adds each input into one of ``KEYS`` arrays (in place) and counts; emits the count."""

    inputs = (IN,)
    outputs = (OUT,)
    checkpoint_interval = 0.3

    def __init__(self, width: int = WIDTH) -> None:
        self.width = width
        self.state = MigratableState(
            {f"k{i}": np.zeros(width, dtype=np.int64) for i in range(KEYS)}
        )
        self.state["n"] = 0

    async def handle(self, msg: Message) -> None:
        x = int(msg.data["x"])
        at = x % self.width
        self.state.mutable(f"k{x % KEYS}", at, at + 1)[0] += x  # one 64 KiB block marked
        self.state["n"] = int(self.state["n"]) + 1
        await self.emit(OUT, {"x": x, "n": self.state["n"]})

    def snapshot(self) -> Any:
        return dict(self.state)

    def restore(self, state: Any) -> None:
        self.state = MigratableState(state)


def model(xs: list[int], width: int = WIDTH) -> dict[str, Any]:
    """The state ``Counter`` reaches after ``xs`` (a pure-Python reference)."""
    rows = {f"k{i}": [0] * width for i in range(KEYS)}
    for x in xs:
        rows[f"k{x % KEYS}"][x % width] += x
    return {"rows": rows, "n": len(xs)}


def as_model(state: dict[str, Any]) -> dict[str, Any]:
    rows = {k: [int(v) for v in state[k]] for k in sorted(state) if k.startswith("k")}
    return {"rows": rows, "n": int(state["n"])}


@dataclass(frozen=True, slots=True)
class CounterAt:
    """Start function: the ``counter`` actor at ``worker`` (a standby unless it owns it)."""

    worker: str
    home: bool = False
    fabric: Fabric | None = None
    id: str = "counter"
    width: int = WIDTH

    def with_fabric(self, fabric: Fabric | None) -> CounterAt:
        return dataclasses.replace(self, fabric=fabric)

    def __call__(self, *args: Any) -> ActorRuntime:
        assert self.fabric is not None
        return ActorRuntime(
            Counter,
            self.fabric,
            id=self.id,
            args={"width": self.width},
            stages=[Migratable(self.worker, home=self.home)],
            events=child_events(self.fabric),
        )


HIN, HOUT = "mig.hist.in", "mig.hist.out"


class Relay(Actor):
    """Emits input ``x`` as item ``x + 1`` of ``HOUT`` (``{"t": float}``), kept in its history."""

    inputs = (HIN,)
    outputs = (HOUT,)
    checkpoint_interval = 0.3
    history = HistorySpec(max_items=10_000)

    def __init__(self) -> None:
        self.state = MigratableState({"n": 0})

    async def handle(self, msg: Message) -> None:
        n = int(msg.data["x"]) + 1
        self.state["n"] = n
        await self.emit(HOUT, {"t": float(n)}, item=n)

    def snapshot(self) -> Any:
        return dict(self.state)

    def restore(self, state: Any) -> None:
        self.state = MigratableState(state)
