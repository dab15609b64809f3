"""The built-in models on series with known change points, and their checkpoints."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diaspora import codec
from diaspora.errors import ConfigError
from diaspora.predict import EwmaZ, WindowedGaussian, build_model

HAVE_RIVER = importlib.util.find_spec("river") is not None
needs_river = pytest.mark.skipif(not HAVE_RIVER, reason="river is not installed (extra 'predict')")

#: each built-in (the LSTM has its own tests) with settings for 1-step series
CONFIGS: dict[str, dict[str, Any]] = {
    "ewma_z": {"kind": "ewma_z", "alpha": 0.02, "z": 5.0},
    "gaussian": {
        "kind": "gaussian",
        "window": 300,
        "step": 20,
        "threshold": 0.999999,
        "warmup": 30,
    },
    "hst": {"kind": "hst"},
    "user": {"kind": "predict_user_models:AboveLimit", "limit": 30.0},
}
KINDS = [pytest.param(k, marks=needs_river) if k == "hst" else k for k in CONFIGS]


def noise(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(10.0, 1.0, n)


def scores(config: dict[str, Any], series: np.ndarray) -> list[float]:
    model = build_model(config)
    return [model.update(float(t), float(x)) for t, x in enumerate(series)]


def first_alarm(config: dict[str, Any], series: np.ndarray, start: int = 0) -> int | None:
    threshold = build_model(config).threshold
    for i, s in enumerate(scores(config, series)):
        if i >= start and s >= threshold:
            return i
    return None


@pytest.mark.parametrize("kind", KINDS)
def test_a_level_shift_is_caught_within_a_few_steps(kind: str) -> None:
    series = noise(800, seed=1)
    series[600:] += 40.0  # the change point
    alarm = first_alarm(CONFIGS[kind], series)
    assert alarm is not None
    assert 600 <= alarm <= 605, alarm


@pytest.mark.parametrize("kind", KINDS)
def test_stationary_noise_raises_no_alarm(kind: str) -> None:
    assert first_alarm(CONFIGS[kind], noise(3000, seed=2)) is None


def test_ewma_forecast_follows_a_ramp_ahead_of_its_values() -> None:
    model = EwmaZ(alpha=0.02)
    for t in range(200):
        model.update(float(t), 100.0 + 2.0 * t)
    assert model.forecast(10) == pytest.approx(100.0 + 2.0 * 209, rel=1e-3)


def test_gaussian_forecast_is_the_windows_line() -> None:
    model = WindowedGaussian(window=50, step=5)
    for t in range(120):
        model.update(float(t), 3.0 * t)
    assert model.forecast(1) == pytest.approx(3.0 * 120)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(
    values=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=400),
    cut=st.floats(0.0, 1.0),
)
def test_a_restored_model_scores_exactly_as_the_original(
    kind: str, values: list[float], cut: float
) -> None:
    k = int(cut * len(values))
    original = build_model(CONFIGS[kind])
    expected = [original.update(float(t), x) for t, x in enumerate(values)]
    first = build_model(CONFIGS[kind])
    head = [first.update(float(t), x) for t, x in enumerate(values[:k])]
    restored = build_model(CONFIGS[kind])
    restored.restore(codec.decode(codec.encode(first.state())))  # as a checkpoint stores it
    tail = [restored.update(float(t), x) for t, x in enumerate(values[k:], start=k)]
    assert head + tail == expected


def test_a_bad_model_config_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"model\.kind: 'nope' is neither a built-in"):
        build_model({"kind": "nope"})
    with pytest.raises(ConfigError, match=r"model: 'ewma_z' does not take \['beta'\]"):
        build_model({"kind": "ewma_z", "beta": 1})
    with pytest.raises(ConfigError, match=r"model: model\.alpha: 2 must be in \(0, 1\]"):
        build_model({"kind": "ewma_z", "alpha": 2})
    with pytest.raises(ConfigError, match=r"has no state\(\)"):
        build_model({"kind": "collections:OrderedDict"})


def test_ewma_up_scores_rises_only_so_a_fall_is_learnt_and_a_rise_stays_anomalous() -> None:
    """A model's error, as the edge_drift monitor sees it: a learning curve (a steep fall once
    the model gets it, learnt as the new level), then a jump that stays (frozen baseline: it
    keeps scoring high)."""
    rng = np.random.default_rng(5)
    falling = np.concatenate([0.45 + 0.02 * rng.standard_normal(10), [0.3, 0.15]])  # learnt
    level = 0.15 + 0.02 * rng.standard_normal(20)
    jump = 0.4 + 0.03 * rng.standard_normal(8)
    up = EwmaZ(alpha=0.3, z=4.0, warmup=5, freeze=True, relearn=50, side="up")
    both = EwmaZ(alpha=0.3, z=4.0, warmup=5, freeze=True, relearn=50)
    series = np.concatenate([falling, level, jump])
    up_scores = [up.update(float(t), float(x)) for t, x in enumerate(series)]
    both_scores = [both.update(float(t), float(x)) for t, x in enumerate(series)]
    settled = slice(len(falling) + 5, len(falling) + len(level))
    assert max(up_scores[settled]) < 4.0  # the fall was learnt: the level scores low
    assert min(up_scores[-len(jump) :]) >= 4.0  # every step of the jump scores high
    assert up.mean < 0.25  # the baseline stayed at the old level (frozen)
    # scored both ways, the fall itself is an anomaly: the baseline froze high, and the
    # settled level (an improvement) keeps scoring high, a false alarm
    assert max(both_scores[settled]) >= 4.0
    with pytest.raises(ConfigError, match="side"):
        build_model({"kind": "ewma_z", "side": "sideways"})
