"""Actors the tests of ``diaspora.testing`` run in trees (importable by child processes)."""

from __future__ import annotations

import os
from pathlib import Path

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


class ExitsOnce(Actor):
    """Like :class:`Echo` on ``once.in``/``once.out``, but its process exits (status 1) at
    the input ``i == 5`` of key ``k0`` the first time, leaving ``marker`` so it does not do
    it again: a restart no fault asked for."""

    inputs = ("once.in",)

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)

    async def handle(self, msg: Message) -> None:
        if msg.data["key"] == "k0" and msg.data["i"] == 5 and not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        await self.emit("once.out", msg.data)
