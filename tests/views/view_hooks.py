"""A reconstruct hook for the view tests (named by import path in a View)."""

from __future__ import annotations

from typing import Any


def stand_ins(key: tuple[Any, ...], missing: dict[str, int]) -> dict[str, list[Any]]:
    """One stand-in per missing item, saying which key and source it stands for."""
    return {
        source: [{"key": list(key), "stand_in": i} for i in range(n)]
        for source, n in missing.items()
    }
