"""Small actors the example trees in ``supervisors/`` run.

``RunningSum`` is the running sum of ``docs/actors.md``; ``Scale`` multiplies a
field and forwards it, so the two make the README's quick-start pipeline;
``KeyedTotals`` keeps a running total per key (the example of testing a
workflow under faults in ``docs/testing.md``).
"""

from __future__ import annotations

from diaspora import Actor, Message

__all__ = ["Archive", "KeyedTotals", "RunningSum", "Scale"]


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


class Archive(Actor):
    """Keep every input, as it came, on ``to`` (a site's archive of a bridged stream)."""

    inputs = ("results",)

    def __init__(self, to: str = "archive") -> None:
        self.to = to

    async def handle(self, msg: Message) -> None:
        await self.emit(self.to, msg.data)


class KeyedTotals(Actor):
    """Consume ``{"key", "i", "value"}`` on ``readings``; emit ``{"key", "i", "total"}``
    to ``totals``, where ``total`` is the running sum of that key's values so far."""

    inputs = ("readings",)
    checkpoint_interval = 0.5
    handle_deadline = 2.0

    def __init__(self, to: str = "totals") -> None:
        self.to = to
        self.totals: dict[str, int] = {}

    async def handle(self, msg: Message) -> None:
        key = msg.data["key"]
        total = self.totals.get(key, 0) + msg.data["value"]
        self.totals[key] = total
        await self.emit(self.to, {"key": key, "i": msg.data["i"], "total": total})

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {"totals": self.totals}

    def restore(self, state: dict[str, dict[str, int]]) -> None:
        self.totals = dict(state["totals"])
