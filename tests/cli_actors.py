"""Actors for the ``diaspora run`` subprocess tests (tests/test_cli_run.py)."""

from __future__ import annotations

from pathlib import Path

from diaspora import Actor, Message
from diaspora.streams import HistorySpec
from diaspora.testing import wait_until


class SlowStart(Actor):
    """Starts only once the file ``gate`` exists; writes ``waiting`` when it begins to wait."""

    inputs = ("ticks",)

    def __init__(self, gate: str, waiting: str) -> None:
        self.gate, self.waiting = Path(gate), Path(waiting)

    async def on_start(self) -> None:
        self.waiting.touch()
        await wait_until(self.gate.exists, timeout=120, what=f"{self.gate} to exist")

    async def handle(self, msg: Message) -> None:
        return None


class Recorded(Actor):
    """Forwards ``numbers`` to ``recorded``, keeping a producer history (local state on disk)."""

    inputs = ("numbers",)
    history = HistorySpec(max_items=100)

    async def handle(self, msg: Message) -> None:
        await self.emit("recorded", msg.data, item=msg.seq)
