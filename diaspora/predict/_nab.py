"""The Numenta Anomaly Benchmark's scoring rule (NAB v1.x), written for this project.

Each labelled anomaly has a **window** of timestamps. A detection is a
point whose anomaly score is at or above the threshold:

- the first (earliest) detection in a window earns ``tp`` times the scaled
  sigmoid of its relative position (``2 sigmoid(-5 p) - 1`` over
  ``sigmoid(5)``'s value, so the window's left edge earns exactly ``tp``
  and its right edge almost nothing); later detections in the same window
  earn nothing more;
- a window without a detection costs ``fn``;
- a detection outside every window costs ``fp`` times the sigmoid of its
  distance past the previous window (``-1`` before the first window, and
  from three window widths on): a false alarm just after a window is cheap;
- the first 15 % of a file (at most 750 points) is a *probationary* period
  that is not scored at all.

A file's raw score is the sum; a corpus is normalised between the *null*
detector (never fires: ``-fn`` per window) and the *perfect* one (fires at
every window's left edge: ``tp`` per window): ``100 (raw - null) / (perfect
- null)``. The profiles are NAB's: ``standard`` (tp 1, fp 0.11, fn 1),
``reward_low_FP_rate`` (fp 0.22) and ``reward_low_FN_rate`` (fn 2).

>>> ts = [float(i) for i in range(100)]
>>> windows = [(40.0, 49.0)]
>>> anomaly = [0.0] * 100
>>> anomaly[40] = 1.0                         # at the window's left edge
>>> round(score_file(ts, anomaly, windows, STANDARD, 0.5).raw, 6)
1.0
>>> score_file(ts, [0.0] * 100, windows, STANDARD, 0.5).raw   # the null detector
-1.0
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LOW_FN",
    "LOW_FP",
    "PROFILES",
    "STANDARD",
    "FileScore",
    "Profile",
    "Sweep",
    "best_threshold",
    "normalised",
    "probation_length",
    "scaled_sigmoid",
    "score_file",
    "sweep",
    "threshold_curve",
]


@dataclass(frozen=True, slots=True)
class Profile:
    """The weights of one NAB application profile."""

    name: str
    tp: float = 1.0
    fp: float = 0.11
    fn: float = 1.0


STANDARD = Profile("standard")
LOW_FP = Profile("reward_low_FP_rate", fp=0.22)
LOW_FN = Profile("reward_low_FN_rate", fn=2.0)
PROFILES: tuple[Profile, ...] = (STANDARD, LOW_FP, LOW_FN)

#: the label of a probationary point (not scored)
_PROBATION = -2
#: the label of a point outside every window
_OUTSIDE = -1


def scaled_sigmoid(position: float) -> float:
    """NAB's reward at a relative ``position``: -1 is a window's left edge, 0 its right edge,
    positive values are past it (``-1.0`` from 3.0 on).

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.0)
    (0.98661, 0.0, -1.0)
    """
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


_MAX_TP = scaled_sigmoid(-1.0)


def probation_length(n: int, percent: float = 0.15) -> int:
    """The points at the start of an ``n``-point file that are not scored."""
    return int(min(math.floor(percent * n), percent * 5000))


@dataclass(frozen=True, slots=True)
class Sweep:
    """Per point: its label (window index, or outside / probationary) and its weighted reward."""

    labels: list[int]
    weights: list[float]
    windows: int  # the windows with at least one scored point

    def window_points(self) -> int:
        return sum(1 for label in self.labels if label >= 0)


def _window_indices(
    ts: Sequence[float], windows: Sequence[tuple[float, float]]
) -> list[tuple[int, int]]:
    out = []
    for left, right in sorted(windows):
        lo = bisect.bisect_left(ts, left)
        hi = bisect.bisect_right(ts, right) - 1
        if lo <= hi:
            out.append((lo, hi))
    return out


def sweep(
    ts: Sequence[float],
    windows: Sequence[tuple[float, float]],
    profile: Profile,
    probation_percent: float = 0.15,
) -> Sweep:
    """Label every point of a file and give it the reward a detection there would earn."""
    n = len(ts)
    spans = _window_indices(ts, windows)
    probation = probation_length(n, probation_percent)
    labels, weights = [_OUTSIDE] * n, [0.0] * n
    k, prev_right, prev_width = 0, None, 0.0
    for i in range(n):
        inside = k < len(spans) and spans[k][0] <= i <= spans[k][1]
        if inside:
            lo, hi = spans[k]
            width = float(hi - lo + 1)
            weights[i] = scaled_sigmoid(-(hi - i + 1) / width) * profile.tp / _MAX_TP
            labels[i] = k
            if i == hi:
                prev_right, prev_width, k = hi, width, k + 1
        else:
            past = 3.0 if prev_right is None else abs(prev_right - i) / max(prev_width - 1, 1.0)
            weights[i] = scaled_sigmoid(past) * profile.fp
        if i < probation:
            labels[i] = _PROBATION
    scored = {label for label in labels if label >= 0}
    return Sweep(labels, weights, len(scored))


@dataclass(frozen=True, slots=True)
class FileScore:
    """One file's raw score at one threshold, with NAB's point counts."""

    raw: float
    tp: int
    tn: int
    fp: int
    fn: int
    windows: int
    detected: int  # windows with a detection
    total: int  # every point, the probationary ones too (NAB's Total_Count)


def _score(s: Sweep, anomaly: Sequence[float], threshold: float, profile: Profile) -> FileScore:
    best: dict[int, float] = {}
    fp_sum, tp, fp, fn, tn = 0.0, 0, 0, 0, 0
    for label, weight, a in zip(s.labels, s.weights, anomaly, strict=True):
        if label == _PROBATION:
            continue
        hit = a >= threshold
        if label >= 0:
            if hit:
                tp += 1
                best[label] = max(best.get(label, -math.inf), weight)
            else:
                fn += 1
        elif hit:
            fp += 1
            fp_sum += weight
        else:
            tn += 1
    raw = fp_sum + sum(best.values()) - profile.fn * (s.windows - len(best))
    return FileScore(raw, tp, tn, fp, fn, s.windows, len(best), len(s.labels))


def score_file(
    ts: Sequence[float],
    anomaly: Sequence[float],
    windows: Sequence[tuple[float, float]],
    profile: Profile,
    threshold: float,
    probation_percent: float = 0.15,
) -> FileScore:
    """The raw NAB score of one file's detections (``anomaly >= threshold``)."""
    if len(ts) != len(anomaly):
        raise ValueError(f"{len(ts)} timestamps but {len(anomaly)} anomaly scores")
    return _score(sweep(ts, windows, profile, probation_percent), anomaly, threshold, profile)


def threshold_curve(
    s: Sweep, anomaly: Sequence[float], profile: Profile
) -> tuple[list[float], list[float], float]:
    """Every threshold that changes the detections (descending) and the raw score at each;
    the third value is the score with no detection (a threshold above every score)."""
    order = sorted(
        (i for i, label in enumerate(s.labels) if label != _PROBATION),
        key=lambda i: anomaly[i],
        reverse=True,
    )
    best: dict[int, float] = {}
    fp_sum, base = 0.0, -profile.fn * s.windows
    thresholds: list[float] = []
    scores: list[float] = []
    window_total = base
    for j, i in enumerate(order):
        label, weight = s.labels[i], s.weights[i]
        if label >= 0:
            old = best.get(label)
            if old is None:
                best[label] = weight
                window_total += weight + profile.fn
            elif weight > old:
                best[label] = weight
                window_total += weight - old
        else:
            fp_sum += weight
        last_of_value = j + 1 == len(order) or anomaly[order[j + 1]] != anomaly[i]
        if last_of_value:
            thresholds.append(float(anomaly[i]))
            scores.append(window_total + fp_sum)
    return thresholds, scores, base


def best_threshold(curves: Sequence[tuple[list[float], list[float], float]]) -> tuple[float, float]:
    """The threshold that maximises the summed raw score of several files, and that sum.

    Exact over every threshold that changes a detection (NAB's own optimiser
    is a local search, so it can only do as well).
    """
    if not any(thresholds for thresholds, _, _ in curves):
        return math.inf, sum(base for _, _, base in curves)
    candidates = np.unique(np.concatenate([np.asarray(t, dtype=float) for t, _, _ in curves]))
    total = np.zeros(len(candidates))
    for thresholds, scores, base in curves:
        thr_asc = np.asarray(thresholds[::-1], dtype=float)
        sc_asc = np.append(np.asarray(scores[::-1], dtype=float), base)
        total += sc_asc[np.searchsorted(thr_asc, candidates, side="left")]  # smallest >= c
    k = len(candidates) - 1 - int(np.argmax(total[::-1]))  # ties: the highest threshold
    nothing = sum(base for _, _, base in curves)
    if total[k] <= nothing:
        return math.inf, nothing
    return float(candidates[k]), float(total[k])


def normalised(raw: float, windows: int, profile: Profile) -> float:
    """``raw`` on NAB's scale over ``windows`` windows: 0 the null detector, 100 the perfect one."""
    null, perfect = -profile.fn * windows, profile.tp * windows
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
