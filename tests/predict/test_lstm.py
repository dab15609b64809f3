"""The LSTM forecaster (extra ``ml``): it learns a signal online, flags a spike, and resumes
exactly from a checkpoint taken while it was training."""

from __future__ import annotations

import importlib.util
import math

import pytest

from diaspora import codec
from diaspora.predict import build_model

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None
    or importlib.util.find_spec("pytorch_lightning") is None,
    reason="torch and pytorch-lightning are not installed (extra 'ml')",
)

CONFIG = {
    "kind": "lstm", "window": 12, "hidden": 8, "first_train": 200, "train_size": 200,
    "retrain_every": 100_000, "swap_after": 20, "epochs": 2, "errors": 100,
}  # fmt: skip


def signal(n: int, spike_at: int | None = None) -> list[float]:
    out = [10.0 + 3.0 * math.sin(2 * math.pi * i / 25) for i in range(n)]
    if spike_at is not None:
        out[spike_at] += 15.0
    return out


def test_it_learns_the_signal_and_flags_a_spike() -> None:
    model = build_model(CONFIG)
    values = signal(340, spike_at=330)
    scores = [model.update(float(t), x) for t, x in enumerate(values)]
    assert max(scores[:220]) == 0.0  # nothing to score with until the training is in
    assert scores[330] >= model.threshold
    assert max(scores[250:330]) < model.threshold
    ahead = model.forecast(3)  # type: ignore[attr-defined]
    assert abs(ahead - signal(343)[342]) < 3.0


def test_a_checkpoint_taken_mid_training_resumes_with_the_same_scores() -> None:
    values = signal(260, spike_at=250)
    original = build_model(CONFIG)
    expected = [original.update(float(t), x) for t, x in enumerate(values)]
    first = build_model(CONFIG)
    head = [first.update(float(t), x) for t, x in enumerate(values[:210])]  # training since 200
    state = codec.decode(codec.encode(first.state()))
    assert state["training"] is not None
    restored = build_model(CONFIG)
    restored.restore(state)
    tail = [restored.update(float(t), x) for t, x in enumerate(values[210:], start=210)]
    assert head + tail == expected
