"""Benchmark rows, the printed table and the JSON file."""

from __future__ import annotations

import json
import platform
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Row:
    """One measured figure; ``ratio`` is value / baseline value when a baseline exists."""

    group: str
    name: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value  # type: ignore[operator]


class Report:
    """Collects rows, prints them as they come, writes one JSON document."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.started = time.time()

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(_line(row), flush=True)
        return row

    def find(self, group: str, name: str) -> Row:
        for row in self.rows:
            if row.group == group and row.name == name:
                return row
        raise KeyError(f"{group}/{name}")

    def table(self) -> str:
        lines = [_HEADER, "-" * len(_HEADER)]
        lines += [_line(r) for r in self.rows]
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        doc = {
            "started": self.started,
            "duration_s": time.time() - self.started,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "processor": platform.processor(),
            },
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rows": [asdict(r) | {"ratio": r.ratio} for r in self.rows],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))


_HEADER = f"{'group':<12} {'benchmark':<44} {'value':>14} {'unit':<8} {'baseline':<30} {'ratio':>7}"


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _line(row: Row) -> str:
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
    return (
        f"{row.group:<12} {row.name:<44} {_fmt(row.value):>14} {row.unit:<8} "
        f"{(row.baseline or ''):<30} {ratio:>7}"
    )
