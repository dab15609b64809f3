"""A reconstruct hook for the view tests (named by import path in a View)."""

from __future__ import annotations

from typing import Any


def stand_ins(key: tuple[Any, ...], missing: dict[str, int]) -> dict[str, list[Any]]:
    """One stand-in per missing item, saying which key and source it stands for."""
    return {
        source: [{"key": list(key), "stand_in": i} for i in range(n)]
        for source, n in missing.items()
    }


def next_pattern(before: Any, after: Any, index: int, count: int) -> dict[str, Any]:
    """A gap reconstructor for the pattern producer: the pattern numbers after ``before``."""
    n = before["tile"] * 16 + before["pos"] + 1 + index + 1
    return {"scan": 1, "tile": (n - 1) // 16, "pos": (n - 1) % 16, "stand_in": True}
