"""A user model for the tests: named by import path in a monitor's or scorer's config."""

from __future__ import annotations

from typing import Any


class AboveLimit:
    """Scores 1.0 for a value over ``limit``, else 0.0; forecasts the last value."""

    threshold = 1.0

    def __init__(self, limit: float = 10.0) -> None:
        self.limit, self.last, self.seen = float(limit), 0.0, 0

    def update(self, t: float, x: float) -> float:
        self.last, self.seen = x, self.seen + 1
        return 1.0 if x > self.limit else 0.0

    def forecast(self, h: int) -> float:
        return self.last

    def state(self) -> Any:
        return {"last": self.last, "seen": self.seen}

    def restore(self, state: Any) -> None:
        self.last, self.seen = state["last"], state["seen"]


#: the events each call action saw, by monitor name
CALLS: dict[str, list[Any]] = {}


async def note(event: Any) -> None:
    """A monitor's ``call:`` action: keeps the warning or resolved event it is given."""
    CALLS.setdefault(event.name, []).append(event)


class Level:
    """Scores the value itself; no forecast."""

    threshold = 100.0

    def update(self, t: float, x: float) -> float:
        return x

    def state(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        pass
