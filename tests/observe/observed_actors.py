"""Actors the observe tests run in real trees (importable by child processes)."""

from __future__ import annotations

import anyio

from diaspora import Actor, Message


class Slow(Actor):
    """Emits each input of ``obs.in`` to ``obs.out`` after ``delay`` (5 ms): a burst makes
    a backlog."""

    inputs = ("obs.in",)
    handle_deadline = 2.0
    checkpoint_interval = 0.3
    checkpoint_every = 200

    def __init__(self, delay: float = 0.005) -> None:
        self.delay = delay

    async def handle(self, msg: Message) -> None:
        await anyio.sleep(self.delay)
        await self.emit("obs.out", msg.data)
