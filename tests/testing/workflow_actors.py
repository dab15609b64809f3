"""Actors the tests of ``diaspora.testing`` run in trees (importable by child processes)."""

from __future__ import annotations

from diaspora import Actor, Message


class Echo(Actor):
    """Emits each input of ``echo.in`` unchanged to ``echo.out``."""

    inputs = ("echo.in",)
    handle_deadline = 1.0
    checkpoint_interval = 0.5

    async def handle(self, msg: Message) -> None:
        await self.emit("echo.out", msg.data)


class Lossy(Actor):
    """Like :class:`Echo`, but drops the third input of every key: a broken workflow."""

    inputs = ("lossy.in",)

    async def handle(self, msg: Message) -> None:
        if msg.data["i"] != 2:
            await self.emit("lossy.out", msg.data)


class Stutter(Actor):
    """Like :class:`Echo`, but emits the second input of every key twice: a broken workflow."""

    inputs = ("stutter.in",)

    async def handle(self, msg: Message) -> None:
        await self.emit("stutter.out", msg.data)
        if msg.data["i"] == 1:
            await self.emit("stutter.out", msg.data)
