"""Actors for the ``diaspora run`` replay-across-sites tests (tests/test_cli_sites_replay.py)."""

from __future__ import annotations

from diaspora import Actor, Message
from diaspora.streams import HistorySpec


class Instrument(Actor):
    """At the edge: each trigger becomes a reading on ``to``, kept in the producer's history."""

    inputs = ("edge.triggers",)
    history = HistorySpec(max_items=10_000)

    def __init__(self, to: str = "edge.readings") -> None:
        self.to = to

    async def handle(self, msg: Message) -> None:
        await self.emit(self.to, {"x": msg.data["x"]})


class Ledger(Actor):
    """At hpc: each reading, with its item number and how it came, on ``to``."""

    inputs = ("edge.readings",)

    def __init__(self, to: str = "hpc.ledger") -> None:
        self.to = to

    async def handle(self, msg: Message) -> None:
        await self.emit(
            self.to,
            {"x": msg.data["x"], "item": msg.item, "replayed": msg.replayed},
        )
