"""Actors the observe tests run in real trees (importable by child processes)."""

from __future__ import annotations

import anyio

from diaspora import Actor, Message


class Slow(Actor):
    """Emits each input of ``obs.in`` to ``obs.out`` after 5 ms: a burst makes a backlog."""

    inputs = ("obs.in",)
    handle_deadline = 2.0
    checkpoint_interval = 0.3
    checkpoint_every = 200

    async def handle(self, msg: Message) -> None:
        await anyio.sleep(0.005)
        await self.emit("obs.out", msg.data)
