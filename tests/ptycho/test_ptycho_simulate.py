"""The detector simulator: photon statistics, tiles of neighbouring positions, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from actors.ptycho.simulate import ScanConfig, Simulator, far_field


def test_free_space_exposure_holds_the_photon_count() -> None:
    sim = Simulator(ScanConfig(photons=2.5e5))
    free = np.ones(sim.object_shape, complex)
    expected = far_field(sim.probe, free, sim.positions(0)[:5], sim.scale)
    np.testing.assert_allclose(expected.sum(axis=(1, 2)), 2.5e5, rtol=1e-9)


@pytest.mark.parametrize("photons", [1e4, 1e6])
def test_counts_are_poisson_around_the_expected_intensity(photons: float) -> None:
    sim = Simulator(ScanConfig(photons=photons, seed=5))
    tile = sim.tile(scan=1, tile=2)
    expected = sim.intensity(1, tile.indices)
    assert tile.patterns.dtype == np.float32
    assert np.all(tile.patterns == np.round(tile.patterns))
    assert tile.patterns.min() >= 0
    # mean total counts: within 4 sigma of the expected totals (Poisson sum)
    totals, mean_totals = tile.patterns.sum(axis=(1, 2)), expected.sum(axis=(1, 2))
    sigma = np.sqrt(mean_totals.sum())
    assert abs(totals.sum() - mean_totals.sum()) < 4 * sigma
    # the object absorbs: totals are below the incident photons, but not by much
    assert 0.4 * photons < totals.mean() < photons
    # Poisson variance: residuals standardised by sqrt(mean) have mean 0 and variance 1
    bright = expected > 20
    z = (tile.patterns[bright] - expected[bright]) / np.sqrt(expected[bright])
    assert bright.sum() > 1000
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 0.1


def test_same_seed_same_patterns_other_seed_other_patterns() -> None:
    a = [f.pattern for f in Simulator(ScanConfig(grid=4, tile_side=2, seed=7)).frames(2)]
    b = [f.pattern for f in Simulator(ScanConfig(grid=4, tile_side=2, seed=7)).frames(2)]
    c = [f.pattern for f in Simulator(ScanConfig(grid=4, tile_side=2, seed=8)).frames(2)]
    assert len(a) == 32
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not any(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    # frame() gives the pattern frames() yields
    sim = Simulator(ScanConfig(grid=4, tile_side=2, seed=7))
    assert np.array_equal(sim.frame(1, 5).pattern, a[16 + 5])


@pytest.mark.parametrize("kind", ["raster", "spiral"])
def test_tiles_are_groups_of_neighbouring_positions(kind: str) -> None:
    cfg = ScanConfig(kind=kind, grid=8, tile_side=4, step=6, jitter=1)
    sim = Simulator(cfg)
    frames = list(sim.frames(1))
    assert len(frames) == 64
    assert [f.index for f in frames] == list(range(64))
    assert [f.tile for f in frames] == [i // 16 for i in range(64)]
    pos = sim.positions(0)
    assert pos.min() >= 0
    assert np.all(pos.max(axis=0) + cfg.n <= sim.object_shape)
    for t in range(sim.tiles_per_scan):
        p = pos[sim.tile_indices(t)]
        span = p.max(axis=0) - p.min(axis=0)
        if kind == "raster":  # a 4 x 4 block
            assert span.max() <= 3 * cfg.step + 2 * cfg.jitter
        else:  # a stretch of the spiral's arm: one step from one to the next
            hops = np.hypot(*np.diff(p, axis=0).T)
            assert hops.max() <= cfg.step + 2 * cfg.jitter + 1
    jitter = pos - Simulator(ScanConfig(kind=kind, jitter=0))._nominal[0] - cfg.jitter
    assert np.abs(jitter).max() <= cfg.jitter
    assert np.abs(jitter).max() > 0


def test_scans_have_their_own_objects() -> None:
    sim = Simulator()
    assert not np.allclose(sim.obj(0), sim.obj(1))
    amp, phase = np.abs(sim.obj(0)), np.angle(sim.obj(0))
    assert amp.min() >= 0.7 - 1e-9
    assert amp.max() <= 1 + 1e-9
    assert np.abs(phase).max() <= 0.5 + 1e-9


def test_the_sample_changes_at_change_at_and_only_from_there() -> None:
    """A drift for the edge's model: the scans from ``change_at`` on are of a sample with a
    wider phase range; the ones before are the same as without a change."""
    plain, changed = Simulator(), Simulator(ScanConfig(change_at=2, changed_phase=1.5))
    for scan in (0, 1):
        assert np.array_equal(plain.obj(scan), changed.obj(scan))
    for scan in (2, 3):
        phase = np.abs(np.angle(changed.obj(scan)))
        assert 0.5 < phase.max() <= 1.5 + 1e-9  # wider than the first sample's +-0.5 rad
    with pytest.raises(ValueError, match=r"ScanConfig\.changed_phase"):
        ScanConfig(change_at=1, changed_phase=4.0)
    with pytest.raises(ValueError, match=r"ScanConfig\.change_at"):
        ScanConfig(change_at=-1)


def test_bad_configs_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"ScanConfig\.kind"):
        ScanConfig(kind="zigzag")
    with pytest.raises(ValueError, match="tile_side: 3 must divide grid"):
        ScanConfig(grid=8, tile_side=3)
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['photon'\]"):
        ScanConfig.of({"photon": 1e6})
    assert ScanConfig.of({"grid": 4, "tile_side": 2}).grid == 4
