"""The PtychoNN-style model: online training helps, checkpoints round-trip, versions grow."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from actors.ptycho.model import (  # noqa: E402
    ModelConfig,
    OnlineTrainer,
    infer,
    load_model,
    targets,
    validation_error,
)
from actors.ptycho.simulate import ScanConfig, Simulator  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*treespec.*:FutureWarning", "ignore:.*val_dataloader.*", "ignore:.*workers.*"
)

# a 32 x 32 instrument keeps CPU training in the test to seconds
SCAN = ScanConfig(n=32, grid=8, tile_side=4, step=3, pupil_radius=5, defocus=3.0, feature=1.5)
MODEL = ModelConfig(n=32, nconv=8)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # 2 cores shared with the rest of the suite


def samples(sim: Simulator, weight: np.ndarray, scans: int, first: int = 0) -> tuple:
    patterns, amplitudes, phases = [], [], []
    for tile in sim.tiles(scans, first):
        truth = np.stack([sim.patch(sim.obj(tile.scan), p) for p in tile.positions])
        a, p = targets(truth, weight)
        patterns.append(tile.patterns)
        amplitudes.append(a)
        phases.append(p)
    return np.concatenate(patterns), np.concatenate(amplitudes), np.concatenate(phases)


def test_online_training_reduces_the_validation_error() -> None:
    sim = Simulator(SCAN)
    trainer = OnlineTrainer(MODEL, probe=sim.probe, seed=0, batch_size=16)
    train = samples(sim, trainer.weight, scans=4)  # 256 samples
    held_out = samples(sim, trainer.weight, scans=1, first=10)
    untrained = trainer.evaluate(*held_out)
    trainer.add(*train)
    assert (trainer.buffered, trainer.samples_seen) == (256, 256)
    for _ in range(2):
        trainer.train(steps=20)
    trained = trainer.evaluate(*held_out)
    assert trainer.version == 2
    assert trained < 0.6 * untrained, (untrained, trained)
    assert validation_error(trainer.model, *held_out, trainer.weight) == trained


def test_checkpoints_round_trip_and_training_continues_from_them() -> None:
    sim = Simulator(SCAN)
    data = samples(sim, np.ones((32, 32)), scans=1)
    a = OnlineTrainer(MODEL, probe=sim.probe, seed=3, batch_size=8)
    a.add(*data)
    a.train(steps=2)
    b = OnlineTrainer.load(a.save(with_buffer=True))
    assert (b.version, b.steps, b.samples_seen, b.buffered) == (1, 2, 64, 64)
    for trainer in (a, b):  # the same Adam state, sampler and buffer: the same next round
        trainer.train(steps=2)
    patterns = data[0][:10]
    out_a, out_b = infer(a.model, patterns), infer(b.model, patterns)
    assert np.array_equal(out_a[0], out_b[0])
    assert np.array_equal(out_a[1], out_b[1])
    # the edge's copy: weights and version only
    model, version = load_model(a.model_bytes())
    assert version == a.version == 2
    edge = infer(model, patterns)
    assert np.array_equal(edge[0], out_a[0])
    assert np.array_equal(edge[1], out_a[1])
    small_batches = infer(model, patterns, batch_size=3)  # the same up to rounding
    np.testing.assert_allclose(small_batches[1], out_a[1], atol=1e-5)
    # without its buffer a loaded trainer keeps its weights and waits for samples
    c = OnlineTrainer.load(a.save())
    assert c.buffered == 0
    assert np.isnan(c.train(steps=1))
    assert c.version == 2


def test_same_seed_same_model() -> None:
    sim = Simulator(SCAN)
    data = samples(sim, np.ones((32, 32)), scans=1)
    outs = []
    for _ in range(2):
        trainer = OnlineTrainer(MODEL, probe=sim.probe, seed=5, batch_size=8)
        trainer.add(*data)
        trainer.train(steps=2)
        outs.append(infer(trainer.model, data[0][:4])[1])
    assert np.array_equal(outs[0], outs[1])
    with pytest.raises(ValueError, match="4 patterns but 3 amplitudes"):
        trainer.add(data[0][:4], data[1][:3], data[2][:3])
