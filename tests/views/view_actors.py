"""Actors for the view tests: a pattern producer that keeps a history."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from diaspora import Actor
from diaspora.streams import HistorySpec

K = 16


@dataclass
class Release:
    """Shared with the test: how far the producer may go."""

    upto: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def set(self, upto: int) -> None:
        self.upto = upto
        event, self.changed = self.changed, anyio.Event()
        event.set()


class Patterns(Actor):
    """Emits pattern n (tile (n-1)//16, position (n-1)%16) as item n on ``subject``."""

    checkpoint_every = 50
    history = HistorySpec(max_items=100_000)

    def __init__(self, release: Release, subject: str = "heal.diff") -> None:
        self.release, self.subject, self.next = release, subject, 1

    async def produce(self) -> None:
        while True:
            while self.next > self.release.upto:
                await self.release.changed.wait()
            n = self.next
            data = {"scan": 1, "tile": (n - 1) // K, "pos": (n - 1) % K}
            await self.emit(self.subject, data, item=n)
            self.next += 1

    def snapshot(self) -> dict[str, int]:
        return {"next": self.next}

    def restore(self, state: dict[str, int]) -> None:
        self.next = state["next"]


class ForgetfulPatterns(Patterns):
    """Keeps only its last 10 items: what the stream loses before that is gone."""

    history = HistorySpec(max_items=10)
