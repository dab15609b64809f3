"""Actors the pool tests run in worker processes (importable as ``tests.compute.pool_actors``)."""

from __future__ import annotations

from diaspora import Actor, Message


class Tally(Actor):
    """Counts its inputs (checkpointed) and emits each with the running count."""

    inputs = ("jobs",)
    checkpoint_every = 1

    def __init__(self, out: str = "tallies") -> None:
        self.out, self.count = out, 0

    async def handle(self, msg: Message) -> None:
        self.count += 1
        await self.emit(self.out, {"n": msg.data["n"], "count": self.count})

    def snapshot(self) -> dict[str, int]:
        return {"count": self.count}

    def restore(self, state: dict[str, int]) -> None:
        self.count = state["count"]


class CrashOnStart(Actor):
    """Fails as it starts: the worker hosting it crash-loops."""

    inputs = ("never",)

    def __init__(self) -> None:
        raise RuntimeError("this actor cannot start (a broken site)")

    async def handle(self, msg: Message) -> None:  # pragma: no cover - never started
        pass
