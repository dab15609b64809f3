"""``python -m diaspora.predict.score <nab_dir>``: run models over NAB series, print NAB scores.

Each model (``--model``, repeatable: a kind, an import path or a JSON table
such as ``'{"kind": "ewma_z", "alpha": 0.02}'``; default ``ewma_z`` and
``gaussian``) runs fresh over every series of the folder; its detections
are scored with NAB's rule (:mod:`diaspora.predict._nab`) for each profile,
at the threshold that maximises the profile's corpus score (or at
``--threshold``), and normalised between the null and perfect detectors of
*these* files. ``--results-dir`` writes the detections in NAB's results
format (``<dir>/<detector>/<category>/<detector>_<file>.csv``) and the
per-file score tables NAB writes. ``--nab-results DIR --detector NAME``
scores another detector's NAB results files instead (NAB's own
``results/`` folder, for instance): how this scorer is checked against
NAB's published numbers (docs/predict.md).

    python -m diaspora.predict.score tests/data/nab --model gaussian --results-dir /tmp/nab-out
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diaspora.errors import ConfigError
from diaspora.predict._corpus import NabFile, read_corpus, read_results, write_results
from diaspora.predict._models import build_model
from diaspora.predict._nab import (
    PROFILES,
    FileScore,
    Profile,
    best_threshold,
    normalised,
    score_file,
    sweep,
    threshold_curve,
)

__all__ = ["ProfileRow", "main", "run_model", "score_corpus"]


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One line of the table: a detector's corpus score under one profile."""

    detector: str
    profile: str
    threshold: float
    raw: float
    score: float
    windows: int
    detected: int
    fp: int
    files: tuple[tuple[str, FileScore], ...] = ()


def run_model(config: dict[str, Any] | str, file: NabFile) -> list[float]:
    """A fresh model's score for every point of ``file``."""
    model = build_model(config, where="--model")
    return [model.update(t, x) for t, x in zip(file.ts, file.values, strict=True)]


def score_corpus(
    detector: str,
    files: Sequence[NabFile],
    anomaly: Sequence[Sequence[float]],
    *,
    threshold: float | None = None,
    profiles: Sequence[Profile] = PROFILES,
) -> list[ProfileRow]:
    """Score one detector's detections over ``files`` for each profile."""
    rows = []
    for profile in profiles:
        sweeps = [sweep(f.ts, f.windows, profile) for f in files]
        chosen = threshold
        if chosen is None:
            curves = [threshold_curve(s, a, profile) for s, a in zip(sweeps, anomaly, strict=True)]
            chosen, _ = best_threshold(curves)
        per_file = [
            score_file(f.ts, a, f.windows, profile, chosen)
            for f, a in zip(files, anomaly, strict=True)
        ]
        windows = sum(s.windows for s in per_file)
        raw = math.fsum(s.raw for s in per_file)
        rows.append(
            ProfileRow(
                detector, profile.name, chosen, raw, normalised(raw, windows, profile), windows,
                sum(s.detected for s in per_file), sum(s.fp for s in per_file),
                tuple((f.name, s) for f, s in zip(files, per_file, strict=True)),
            )
        )  # fmt: skip
    return rows


def _table(rows: Sequence[ProfileRow]) -> str:
    lines = [
        f"{'detector':<18} {'profile':<20} {'threshold':>10} {'raw':>9} {'score':>7} "
        f"{'windows':>9} {'FP':>5}"
    ]
    for r in rows:
        lines.append(
            f"{r.detector:<18} {r.profile:<20} {r.threshold:>10.4g} {r.raw:>9.3f} {r.score:>7.2f} "
            f"{r.detected:>4}/{r.windows:<4} {r.fp:>5}"
        )
    return "\n".join(lines)


def _write_scores(results_dir: Path, rows: Sequence[ProfileRow]) -> None:
    for r in rows:
        path = results_dir / r.detector / f"{r.detector}_{r.profile}_scores.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(
                [
                    "Detector",
                    "Profile",
                    "File",
                    "Threshold",
                    "Score",
                    "TP",
                    "TN",
                    "FP",
                    "FN",
                    "Total_Count",
                ]
            )
            for name, s in r.files:
                out.writerow(
                    [
                        r.detector,
                        r.profile,
                        name,
                        r.threshold,
                        s.raw,
                        s.tp,
                        s.tn,
                        s.fp,
                        s.fn,
                        s.total,
                    ]
                )
            counts = ("tp", "tn", "fp", "fn", "total")
            sums = [sum(getattr(s, k) for _, s in r.files) for k in counts]
            out.writerow(["Totals", "", "", "", r.raw, *sums])


def _model_config(text: str) -> dict[str, Any] | str:
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"--model {text!r}: not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ConfigError(f'--model {text!r}: a JSON table like {{"kind": "ewma_z"}}')
        return value
    return text


def _name(config: dict[str, Any] | str) -> str:
    if isinstance(config, str):
        return config.rpartition(":")[2]
    extra = ",".join(f"{k}={v}" for k, v in config.items() if k != "kind")
    kind = str(config.get("kind", "ewma_z")).rpartition(":")[2]
    return f"{kind}({extra})" if extra else kind


def _squash(scores: Sequence[float], threshold: float) -> list[float]:
    """Scores in [0, 1] for the results files (monotone: the same detections at any threshold)."""
    if all(0.0 <= s <= 1.0 for s in scores):
        return list(scores)
    t = threshold if threshold > 0 else 1.0
    return [s / (s + t) if math.isfinite(s) else 1.0 for s in scores]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diaspora.predict.score", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "nab_dir", help="a folder in NAB's layout (category folders + combined_windows.json)"
    )
    parser.add_argument(
        "--model", action="append", default=[], help="kind, import path or JSON table"
    )
    parser.add_argument(
        "--threshold", type=float, help="score at this threshold (default: the best per profile)"
    )
    parser.add_argument(
        "--results-dir", type=Path, help="write NAB results files and score tables here"
    )
    parser.add_argument(
        "--nab-results", type=Path, help="score NAB results files of --detector from this folder"
    )
    parser.add_argument(
        "--detector", help="with --nab-results: the detector's folder name (e.g. windowedGaussian)"
    )
    parser.add_argument(
        "--only", action="append", default=[], help="keep files whose name contains this"
    )
    args = parser.parse_args(argv)
    try:
        files = read_corpus(args.nab_dir, args.only)
        rows: list[ProfileRow] = []
        if args.nab_results is not None:
            if not args.detector:
                raise ConfigError("--nab-results needs --detector (the detector's folder name)")
            anomaly = [read_results(args.nab_results, args.detector, f) for f in files]
            rows += score_corpus(args.detector, files, anomaly, threshold=args.threshold)
        for text in args.model or ([] if args.nab_results else ["ewma_z", "gaussian"]):
            config = _model_config(text)
            started = time.perf_counter()
            anomaly = [run_model(config, f) for f in files]
            seconds = time.perf_counter() - started
            name = _name(config)
            model_rows = score_corpus(name, files, anomaly, threshold=args.threshold)
            rows += model_rows
            print(
                f"{name}: {sum(len(f.ts) for f in files)} points in {seconds:.2f} s",
                file=sys.stderr,
            )
            if args.results_dir is not None:
                threshold = build_model(config).threshold
                for f, a in zip(files, anomaly, strict=True):
                    write_results(args.results_dir, name, f, _squash(a, threshold))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(files)} files, {sum(len(f.windows) for f in files)} windows ({args.nab_dir})")
    print(_table(rows))
    if args.results_dir is not None:
        _write_scores(args.results_dir, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
