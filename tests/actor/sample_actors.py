"""Actors the tests run (importable by child processes as ``tests.actor.sample_actors``)."""

from __future__ import annotations

from collections.abc import MutableSet
from typing import Any

import anyio

from diaspora import Actor, Message


class RunningSum(Actor):
    """The running sum of docs/actors.md; ``crash_at`` seqs raise once each (then are forgotten)."""

    inputs = ("numbers",)
    checkpoint_every = 500
    on_poison = "crash"  # a raise in handle is a crash and restart, as the tests mean it

    def __init__(
        self, scale: int = 1, crash_at: MutableSet[int] | None = None, delay: float = 0.0
    ) -> None:
        self.scale, self.total = scale, 0
        self.crash_at = crash_at if crash_at is not None else set()
        self.delay = delay

    async def handle(self, msg: Message) -> None:
        self.total += msg.data["x"] * self.scale
        if msg.seq in self.crash_at:
            self.crash_at.discard(msg.seq)
            raise RuntimeError(f"injected crash at seq {msg.seq}")
        if self.delay:
            await anyio.sleep(self.delay)
        await self.emit("sums", {"total": self.total, "seq": msg.seq})

    def snapshot(self) -> dict[str, int]:
        return {"total": self.total}

    def restore(self, state: dict[str, int]) -> None:
        self.total = state["total"]


class PassThrough(Actor):
    """Consume ``source``, emit each payload unchanged to ``sink``."""

    inputs = ("source",)
    checkpoint_every = 1000

    async def handle(self, msg: Message) -> None:
        await self.emit("sink", msg.data)


class Counter(Actor):
    """A source: emits items 1..n with their own numbers, checkpointing ``next``."""

    def __init__(self, n: int = 100, subject: str = "counts") -> None:
        self.n, self.subject, self.next = n, subject, 1

    async def produce(self) -> None:
        while self.next <= self.n:
            await self.emit(self.subject, {"i": self.next}, item=self.next)
            self.next += 1

    def snapshot(self) -> dict[str, int]:
        return {"next": self.next}

    def restore(self, state: dict[str, Any]) -> None:
        self.next = state["next"]


class Sleepy(Actor):
    """Hangs in ``handle`` on messages whose ``hang`` field is true."""

    inputs = ("work",)
    handle_deadline = 0.5
    on_poison = "crash"

    async def handle(self, msg: Message) -> None:
        if msg.data.get("hang"):
            await anyio.sleep(3600)
        await self.emit("done", {"seq": msg.seq})


class Picky(Actor):
    """Doubles ``x``; raises on ``x == "boom"`` (a poison message)."""

    inputs = ("jobs",)
    max_attempts = 3

    async def handle(self, msg: Message) -> None:
        x = msg.data["x"]
        if x == "boom":
            raise ValueError("cannot double 'boom'")
        await self.emit("results", {"x": 2 * x})


class PickyCrashing(Picky):
    """``Picky`` that crashes on a poison message instead of retrying in place."""

    on_poison = "crash"


class Hoarder(Actor):
    """Keeps every input in a numpy array: a state too large for a KV value."""

    inputs = ("frames",)
    checkpoint_every = 10

    def __init__(self) -> None:
        import numpy as np

        self.frames = np.zeros((0, 256, 256), dtype=np.float32)

    async def handle(self, msg: Message) -> None:
        import numpy as np

        self.frames = np.concatenate([self.frames, msg.data["frame"][None]])
        await self.emit("hoard.sizes", {"n": len(self.frames)})

    def snapshot(self) -> dict[str, Any]:
        return {"frames": self.frames}

    def restore(self, state: dict[str, Any]) -> None:
        self.frames = state["frames"].copy()
