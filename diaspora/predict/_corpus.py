"""Reading a folder in NAB's layout, and writing detections in NAB's results format.

A corpus folder holds category folders of ``timestamp,value`` CSV files and
``combined_windows.json`` (at its top, or NAB's own ``labels/`` and
``data/`` folders). Only the files the windows name and the folder has are read.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from diaspora.errors import ConfigError

__all__ = ["NabFile", "read_corpus", "read_results", "write_results"]


@dataclass(frozen=True, slots=True)
class NabFile:
    """One series: its name in the corpus (``category/file.csv``), points and windows."""

    name: str
    stamps: list[str]
    ts: list[float]
    values: list[float]
    windows: list[tuple[float, float]]

    def labels(self) -> list[int]:
        """1 for a point inside a window, else 0 (NAB's ``label`` column)."""
        return [int(any(lo <= t <= hi for lo, hi in self.windows)) for t in self.ts]


def _seconds(stamp: str, where: str) -> float:
    try:
        return datetime.fromisoformat(stamp.strip()).replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise ConfigError(
            f"{where}: {stamp!r} is not a timestamp like 2014-07-01 00:00:00"
        ) from exc


def _windows_file(root: Path) -> Path:
    for candidate in (root / "combined_windows.json", root / "labels" / "combined_windows.json"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"{root}: no combined_windows.json (NAB's scoring windows) in the folder or in its labels/"
    )


def read_corpus(root: str | os.PathLike[str], only: Sequence[str] = ()) -> list[NabFile]:
    """The series of a NAB-layout folder that its windows file names (sorted by name).

    ``only``: keep the files whose name contains one of these strings.
    """
    base = Path(root)
    windows_path = _windows_file(base)
    try:
        windows = json.loads(windows_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{windows_path}: unreadable windows file: {exc}") from exc
    data = base / "data" if (base / "data").is_dir() else base
    out = []
    for name in sorted(windows):
        path = data / name
        if not path.is_file() or (only and not any(s in name for s in only)):
            continue
        stamps, values = [], []
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                stamps.append(row["timestamp"])
                values.append(float(row["value"]))
        spans = [
            (_seconds(lo, f"{windows_path}: {name}"), _seconds(hi, f"{windows_path}: {name}"))
            for lo, hi in windows[name]
        ]
        ts = [_seconds(s, str(path)) for s in stamps]
        out.append(NabFile(name, stamps, ts, values, spans))
    if not out:
        raise ConfigError(f"{base}: none of the files {windows_path.name} names is in the folder")
    return out


def _result_path(results_dir: Path, detector: str, name: str) -> Path:
    category, _, file = name.rpartition("/")
    return results_dir / detector / category / f"{detector}_{file}"


def write_results(
    results_dir: str | os.PathLike[str], detector: str, file: NabFile, anomaly: Sequence[float]
) -> Path:
    """Write ``file``'s detections as NAB does (``timestamp,value,anomaly_score,label``)."""
    path = _result_path(Path(results_dir), detector, file.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["timestamp", "value", "anomaly_score", "label"])
        for row in zip(file.stamps, file.values, anomaly, file.labels(), strict=True):
            writer.writerow(row)
    return path


def read_results(results_dir: str | os.PathLike[str], detector: str, file: NabFile) -> list[float]:
    """The ``anomaly_score`` column of a NAB results file (any NAB detector's)."""
    path = _result_path(Path(results_dir), detector, file.name)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            scores = [float(row["anomaly_score"]) for row in csv.DictReader(f)]
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: not a NAB results file for {file.name}: {exc}") from exc
    if len(scores) != len(file.ts):
        raise ConfigError(f"{path}: {len(scores)} rows, but {file.name} has {len(file.ts)}")
    return scores
