"""The NAB scorer against hand-computed examples, and the table of the NAB series present."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from diaspora.predict._corpus import read_corpus, read_results
from diaspora.predict._nab import (
    LOW_FN,
    LOW_FP,
    STANDARD,
    best_threshold,
    normalised,
    probation_length,
    score_file,
    sweep,
    threshold_curve,
)
from diaspora.predict.score import main, run_model, score_corpus

TS = [float(i) for i in range(100)]  # probation: the first 15 points
WINDOW = [(40.0, 49.0)]  # indices 40..49: width 10


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


MAX_TP = 2 * sig(5.0) - 1  # the reward at a window's left edge, before NAB divides by it


def detections(*at: int, n: int = 100) -> list[float]:
    out = [0.0] * n
    for i in at:
        out[i] = 1.0
    return out


def raw(anomaly: list[float], profile=STANDARD, windows=WINDOW) -> float:  # type: ignore[no-untyped-def]
    return score_file(TS, anomaly, windows, profile, threshold=0.5).raw


def test_the_null_and_perfect_detectors_score_minus_fn_and_tp_per_window() -> None:
    assert raw(detections()) == -1.0
    assert raw(detections(), LOW_FN) == -2.0
    assert raw(detections(40)) == pytest.approx(1.0)
    assert normalised(-1.0, 1, STANDARD) == 0.0
    assert normalised(1.0, 1, STANDARD) == 100.0
    assert normalised(-2.0, 1, LOW_FN) == 0.0


def test_an_early_detection_earns_more_than_a_late_one() -> None:
    # position in the window = -(right - i + 1) / width
    middle = (2 * sig(5 * 0.5) - 1) / MAX_TP  # i = 45: -(49 - 45 + 1) / 10 = -0.5
    late = (2 * sig(5 * 0.1) - 1) / MAX_TP  # i = 49, the right edge: -0.1
    assert raw(detections(45)) == pytest.approx(middle)  # 0.8598
    assert raw(detections(49)) == pytest.approx(late)  # 0.2482
    assert raw(detections(42, 45, 49)) == pytest.approx((2 * sig(5 * 0.8) - 1) / MAX_TP)


def test_false_positives_cost_fp_weighted_by_their_distance_past_the_window() -> None:
    before = -1.0 * 0.11  # before the first window: the full cost
    just_after = (2 * sig(-5 * (2 / 9)) - 1) * 0.11  # i = 51: |49 - 51| / (10 - 1)
    far = -1.0 * 0.11  # i = 80: 31 / 9 >= 3
    assert raw(detections(20)) == pytest.approx(-1.0 + before)
    assert raw(detections(51)) == pytest.approx(-1.0 + just_after)
    assert raw(detections(80)) == pytest.approx(-1.0 + far)
    assert raw(detections(20), LOW_FP) == pytest.approx(-1.0 - 0.22)
    assert raw(detections(40, 20, 80)) == pytest.approx(1.0 - 0.22)


def test_the_probationary_period_is_not_scored() -> None:
    assert probation_length(100) == 15
    assert probation_length(100_000) == 750
    assert raw(detections(5)) == -1.0  # a detection there is neither FP nor TP
    in_probation = [(10.0, 20.0)]  # a window partly in probation: scored on its other points
    assert raw(detections(), windows=in_probation) == -1.0
    assert raw(detections(16), windows=in_probation) == pytest.approx(
        (2 * sig(5 * (5 / 11)) - 1) / MAX_TP  # i = 16 in 10..20: -(20 - 16 + 1) / 11
    )
    assert raw(detections(), windows=[(2.0, 8.0)]) == 0.0  # wholly in probation: not counted


def test_the_best_threshold_is_the_one_with_the_highest_corpus_score() -> None:
    anomaly = [0.0] * 100
    anomaly[20], anomaly[45], anomaly[60] = 0.9, 0.5, 0.7  # FP, TP, FP after the window
    s = sweep(TS, WINDOW, STANDARD)
    thresholds, scores, base = threshold_curve(s, anomaly, STANDARD)
    assert thresholds[:3] == [0.9, 0.7, 0.5]
    assert base == -1.0
    for t, expected in zip(thresholds, scores, strict=False):
        assert expected == pytest.approx(score_file(TS, anomaly, WINDOW, STANDARD, t).raw)
    best, total = best_threshold([(thresholds, scores, base)])
    assert best == 0.5
    assert total == pytest.approx(max(scores))
    assert best_threshold([([0.3], [-1.5], -1.0)]) == (math.inf, -1.0)  # better never to fire


def test_results_files_round_trip_in_nab_format(tmp_path: Path) -> None:
    corpus = tmp_path / "nab"
    (corpus / "synthetic").mkdir(parents=True)
    rows = ["timestamp,value"] + [
        f"2020-01-01 00:{m:02d}:00,{10 + (m == 50) * 90}" for m in range(60)
    ]
    (corpus / "synthetic" / "spike.csv").write_text("\n".join(rows) + "\n")
    windows = {
        "synthetic/spike.csv": [["2020-01-01 00:45:00.000000", "2020-01-01 00:55:00.000000"]]
    }
    (corpus / "combined_windows.json").write_text(json.dumps(windows))
    out = tmp_path / "results"
    assert (
        main(
            [str(corpus), "--model", '{"kind": "ewma_z", "warmup": 10}', "--results-dir", str(out)]
        )
        == 0
    )
    (file,) = read_corpus(corpus)
    written = read_results(out, "ewma_z(warmup=10)", file)
    assert len(written) == 60
    assert all(0.0 <= a <= 1.0 for a in written)
    assert max(range(60), key=written.__getitem__) == 50
    header = (out / "ewma_z(warmup=10)" / "synthetic" / "ewma_z(warmup=10)_spike.csv").read_text()
    assert header.startswith("timestamp,value,anomaly_score,label\n")
    scores = (out / "ewma_z(warmup=10)" / "ewma_z(warmup=10)_standard_scores.csv").read_text()
    assert scores.splitlines()[-1].startswith("Totals")


def nab_dir() -> Path | None:
    env = os.environ.get("DIASPORA_NAB_DIR")
    # the development subset ships with the tests (NAB's MIT licence beside it)
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "data" / "nab"
    return path if (path / "combined_windows.json").is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(
    nab_dir() is None, reason="no NAB data: set DIASPORA_NAB_DIR or restore tests/data/nab"
)
def test_the_table_of_the_nab_series_present(capsys: pytest.CaptureFixture[str]) -> None:
    root = nab_dir()
    assert root is not None
    assert main([str(root), "--model", "ewma_z"]) == 0
    table = capsys.readouterr().out.splitlines()
    files = read_corpus(root)
    assert table[0].startswith(f"{len(files)} files, {sum(len(f.windows) for f in files)} windows")
    rows = score_corpus("ewma_z", files, [run_model("ewma_z", f) for f in files])
    for row, line in zip(rows, table[2:], strict=True):
        assert line.split()[:2] == ["ewma_z", row.profile]
        assert float(line.split()[4]) == pytest.approx(row.score, abs=0.01)
        assert row.score > 0.0  # better than never firing under every profile
