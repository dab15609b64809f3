"""Actors for the QoS stream tests: a paced sensor with history, a collector that can be slowed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio

from diaspora import Actor, Message
from diaspora.streams import HistorySpec


@dataclass
class Throttle:
    """Shared with the test: how far a sensor may go, how slow a collector is."""

    release: int = 0  # the sensor emits items up to this number
    rate: float = 0.0  # items/s; 0 = as fast as it can
    handle_delay: float = 0.0  # seconds the collector spends per item
    changed: anyio.Event = field(default_factory=anyio.Event)

    def set(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        event, self.changed = self.changed, anyio.Event()
        event.set()


class Sensor(Actor):
    """Emits ``{"t": float(n)}`` as item n on ``temps``, as far as the throttle releases."""

    checkpoint_every = 10
    history = HistorySpec(max_items=10_000)

    def __init__(self, throttle: Throttle, subject: str = "temps") -> None:
        self.throttle, self.subject, self.next = throttle, subject, 1

    async def produce(self) -> None:
        while True:
            while self.next > self.throttle.release:
                await self.throttle.changed.wait()
            await self.emit(self.subject, {"t": float(self.next)}, item=self.next)
            self.next += 1
            if self.throttle.rate:
                await anyio.sleep(1.0 / self.throttle.rate)

    def snapshot(self) -> dict[str, int]:
        return {"next": self.next}

    def restore(self, state: dict[str, int]) -> None:
        self.next = state["next"]


class ForgetfulSensor(Sensor):
    history = HistorySpec(max_items=10)


class Collector(Actor):
    """Copies every item it handles to ``collected`` with how it came."""

    inputs = ("temps",)
    checkpoint_every = 10

    def __init__(self, throttle: Throttle | None = None) -> None:
        self.throttle = throttle

    async def handle(self, msg: Message) -> None:
        if self.throttle is not None and self.throttle.handle_delay:
            await anyio.sleep(self.throttle.handle_delay)
        await self.emit(
            "collected",
            {
                "t": msg.data["t"],
                "seq": msg.seq,
                "item": msg.item,
                "replayed": msg.replayed,
                "reconstructed": msg.reconstructed,
                "aggregated": int(msg.headers.get("Diaspora-Aggregated", "1")),
            },
        )


class KeyedSensor(Sensor):
    """Like Sensor, with keys k0..k7 in turn (the partition key)."""

    async def produce(self) -> None:
        while True:
            while self.next > self.throttle.release:
                await self.throttle.changed.wait()
            n = self.next
            await self.emit(self.subject, {"t": float(n)}, item=n, key=f"k{n % 8}")
            self.next += 1
            if self.throttle.rate:
                await anyio.sleep(1.0 / self.throttle.rate)


class KeyedCounter(Actor):
    """Counts items per key (state per partition); can be slowed by the throttle."""

    inputs = ("temps",)
    checkpoint_every = 20

    def __init__(self, throttle: Throttle | None = None) -> None:
        self.throttle = throttle
        self.counts: dict[str, int] = {}

    async def handle(self, msg: Message) -> None:
        if self.throttle is not None and self.throttle.handle_delay:
            await anyio.sleep(self.throttle.handle_delay)
        key = msg.key or ""
        self.counts[key] = self.counts.get(key, 0) + 1
        await self.emit("counted", {"key": key, "n": self.counts[key], "item": msg.item})

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def restore(self, state: dict[str, int]) -> None:
        self.counts = dict(state)


class ThinningSensor(Sensor):
    """A sensor that decimates at the source: it leaves out every item ``n`` with
    ``n % 3 == 2`` (``Actor.leave_out``), and takes a checkpoint right after each."""

    checkpoint_every = None

    async def produce(self) -> None:
        while True:
            while self.next > self.throttle.release:
                await self.throttle.changed.wait()
            if self.next % 3 == 2:
                self.leave_out(self.subject)
                self.next += 1
                await self.checkpoint()  # a restart here must still say what was left out
                continue
            await self.emit(self.subject, {"t": float(self.next)}, item=None)
            self.next += 1
