"""ePIE with a known probe on one tile, and the registered error, SSIM and PSNR."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.ptycho.epie import psnr, reconstruct, reconstruct_tile, registered_error, ssim
from actors.ptycho.metrics import complex_scale_errors
from actors.ptycho.simulate import ScanConfig, Simulator, make_object

BOUND = 0.06  # registered error of a 16-position tile at 1e6 photons (measured ~0.03)


def test_epie_reconstructs_a_tile_below_the_bound() -> None:
    sim = Simulator(ScanConfig(seed=0))
    tile = sim.tile(scan=0, tile=0)
    rec = reconstruct_tile(tile, sim.probe, sim.scale, n_iter=50)
    truth = sim.obj(0)[rec.region]
    mask = rec.mask()
    error = registered_error(rec.obj, truth, mask)
    assert error < BOUND
    # what the iterations did: the start (a flat object) is far off
    assert registered_error(np.ones_like(truth), truth, mask) > 5 * error
    # deterministic: the same seed gives the same object
    first, again = (reconstruct_tile(tile, sim.probe, sim.scale, n_iter=3) for _ in range(2))
    assert np.array_equal(again.obj, first.obj)
    # the training targets are the object under each exposure
    patches = rec.patches()
    assert patches.shape == (16, 64, 64)
    y, x = rec.positions[3]
    assert np.array_equal(patches[3], rec.obj[y : y + 64, x : x + 64])


def test_a_tile_with_missing_patterns_still_reconstructs() -> None:
    sim = Simulator(ScanConfig(seed=2))
    tile = sim.tile(scan=0, tile=3)
    keep = [0, 1, 2, 3, 5, 6, 8, 9, 10, 12, 14, 15]  # 4 of 16 lost
    rec = reconstruct(0, 3, tile.patterns[keep], tile.positions[keep], sim.probe, sim.scale)
    truth = sim.obj(0)[rec.region]
    assert registered_error(rec.obj, truth, rec.mask()) < 2 * BOUND


@settings(max_examples=15, deadline=None)
@given(
    dy=st.integers(-3, 3),
    dx=st.integers(-3, 3),
    gain=st.floats(0.2, 5.0),
    phase=st.floats(-3.0, 3.0),
    ky=st.integers(-2, 2),
    kx=st.integers(-2, 2),
)
def test_registration_removes_scale_phase_translation_and_ramp(
    dy: int, dx: int, gain: float, phase: float, ky: int, kx: int
) -> None:
    truth = make_object((48, 48), seed=4)
    y, x = np.indices(truth.shape)
    ramp = np.exp(2j * np.pi * (ky * y + kx * x) / 48)
    estimate = gain * np.exp(1j * phase) * ramp * np.roll(truth, (dy, dx), axis=(0, 1))
    assert registered_error(estimate, truth, border=4) < 1e-6
    noisy = estimate + 0.05 * gain * np.random.default_rng(0).standard_normal(truth.shape)
    assert 0.001 < registered_error(noisy, truth, border=4) < 0.2


def test_complex_scale_errors_per_patch() -> None:
    truth = np.stack([make_object((16, 16), seed=s) for s in range(3)])
    estimates = truth * np.array([1.0, 2j, -0.5])[:, None, None]
    estimates[2] += 0.1
    errors = complex_scale_errors(estimates, truth)
    assert errors.shape == (3,)
    assert errors[0] < 1e-12
    assert errors[1] < 1e-12
    assert errors[2] > 0.01


def test_ssim_and_psnr() -> None:
    rng = np.random.default_rng(1)
    image = np.abs(make_object((40, 40), seed=3))
    noisy = image + 0.02 * rng.standard_normal(image.shape)
    noisier = image + 0.1 * rng.standard_normal(image.shape)
    assert ssim(image, image) == 1.0
    assert 1.0 > ssim(noisy, image) > ssim(noisier, image)
    assert psnr(image, image) == float("inf")
    assert psnr(noisy, image) > psnr(noisier, image)
    mse = np.mean((noisy - image) ** 2)
    assert abs(psnr(noisy, image, data_range=1.0) - 10 * np.log10(1 / mse)) < 1e-9
