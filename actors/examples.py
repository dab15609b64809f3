"""Small actors the example trees in ``supervisors/`` run.

``RunningSum`` is the README's running sum; ``Scale`` multiplies a field and
forwards it, so two of them make a pipeline.
"""

from __future__ import annotations

from diaspora import Actor, Message

__all__ = ["RunningSum", "Scale"]


class RunningSum(Actor):
    """Consume ``{"x": n}`` on ``numbers``; emit ``{"total", "seq"}`` to ``sums``."""

    inputs = ("numbers",)
    checkpoint_every = 500

    def __init__(self, scale: int = 1, to: str = "sums") -> None:
        self.scale, self.to, self.total = scale, to, 0

    async def handle(self, msg: Message) -> None:
        self.total += msg.data["x"] * self.scale
        await self.emit(self.to, {"total": self.total, "seq": msg.seq})

    def snapshot(self) -> dict[str, int]:
        return {"total": self.total}

    def restore(self, state: dict[str, int]) -> None:
        self.total = state["total"]


class Scale(Actor):
    """Consume ``{"x": n}`` on ``numbers``; emit ``{"x": n * factor}`` to ``to`` (stateless)."""

    inputs = ("numbers",)

    def __init__(self, factor: float = 1.0, to: str = "scaled") -> None:
        self.factor, self.to = factor, to

    async def handle(self, msg: Message) -> None:
        await self.emit(self.to, {"x": msg.data["x"] * self.factor})
