"""ePIE reconstruction of one tile with a known probe (numpy only).

:func:`epie` is the extended ptychographic iterative engine (Maiden &
Rodenburg 2009) with the probe held fixed: for each exposure in a random
order, the exit wave's far field keeps its phase and takes the measured
amplitude, and the object patch moves by ``alpha · conj(P)/max|P|² · Δψ``.
:func:`reconstruct_tile` runs it on the region a :class:`~actors.ptycho.simulate.Tile`
covers and returns a :class:`Reconstruction` (the object of that region,
its origin in the scan's object, the illumination weight and the per-position
patches that are the CNN's training targets). ``registered_error``,
``ssim`` and ``psnr`` are re-exported from :mod:`actors.ptycho.metrics`.

>>> from actors.ptycho.simulate import ScanConfig, Simulator
>>> sim = Simulator(ScanConfig(grid=4, tile_side=4, seed=1))
>>> rec = reconstruct_tile(sim.tile(0, 0), sim.probe, sim.scale, n_iter=20)
>>> rec.obj.shape == rec.weight.shape, rec.patches().shape
(True, (16, 64, 64))
>>> truth = sim.obj(0)[rec.region]
>>> registered_error(rec.obj, truth, rec.mask()) < 0.1
True

Public API (stable): :func:`epie`, :func:`reconstruct_tile`, :func:`reconstruct`,
:class:`Reconstruction`, :func:`illumination`, and the metrics above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from actors.ptycho.metrics import psnr, registered_error, ssim
from actors.ptycho.simulate import Tile

__all__ = [
    "Reconstruction",
    "epie",
    "illumination",
    "psnr",
    "reconstruct",
    "reconstruct_tile",
    "registered_error",
    "ssim",
]

Complex = npt.NDArray[np.complex128]
Ints = npt.NDArray[np.int64]


def illumination(probe: Complex, positions: Ints, shape: tuple[int, int]) -> Any:
    """Sum of ``|probe|²`` over the exposures, on an object of ``shape`` (the weight of a pixel)."""
    n = probe.shape[0]
    weight = np.zeros(shape)
    power = np.abs(probe) ** 2
    for y, x in positions:
        weight[y : y + n, x : x + n] += power
    return weight


def epie(
    intensities: Any,
    positions: Ints,
    probe: Complex,
    shape: tuple[int, int],
    *,
    n_iter: int = 50,
    alpha: float = 1.0,
    seed: int = 0,
    initial: Complex | None = None,
) -> Complex:
    """The object (``shape``) whose far fields through ``probe`` at ``positions`` best match.

    ``intensities`` are (P, n, n) in the units of ``|FFT(probe · object)|²``
    (``norm="ortho"``): divide photon counts by the simulator's ``scale``.
    ``positions`` are integer top-left corners in the object. The order of
    updates is a permutation drawn from ``seed`` each iteration, so the result
    is deterministic.
    """
    n = probe.shape[0]
    amplitude = np.sqrt(np.maximum(np.asarray(intensities, dtype=np.float64), 0.0))
    obj = np.ones(shape, np.complex128) if initial is None else np.array(initial, np.complex128)
    step = alpha * np.conj(probe) / float(np.max(np.abs(probe)) ** 2)
    rng = np.random.default_rng(seed)
    pos = [(int(y), int(x)) for y, x in positions]
    for _ in range(n_iter):
        for i in rng.permutation(len(pos)):
            y, x = pos[i]
            patch = obj[y : y + n, x : x + n]
            psi = probe * patch
            far = np.fft.fft2(psi, norm="ortho")
            corrected = far * (amplitude[i] / np.maximum(np.abs(far), 1e-12))  # keep the phase
            obj[y : y + n, x : x + n] = patch + step * (np.fft.ifft2(corrected, norm="ortho") - psi)
    return obj


@dataclass(frozen=True, slots=True)
class Reconstruction:
    """The ePIE object of one tile's region and what it takes to use it as a target."""

    scan: int
    tile: int
    obj: Complex  #: the reconstructed object of the tile's region
    origin: tuple[int, int]  #: the region's top-left corner in the scan's object
    positions: Ints  #: (K, 2) positions relative to ``origin``
    weight: Any  #: illumination of each pixel of the region (sum of |probe|²)
    n: int  #: pattern side

    @property
    def region(self) -> tuple[slice, slice]:
        """Index of the region in the scan's object: ``truth[rec.region]``."""
        (y, x), (h, w) = self.origin, self.obj.shape
        return slice(y, y + h), slice(x, x + w)

    def mask(self, fraction: float = 0.1) -> Any:
        """Where the illumination is at least ``fraction`` of its maximum (the trusted part)."""
        return self.weight >= fraction * float(self.weight.max())

    def patches(self) -> Complex:
        """The (K, n, n) object patches under each exposure: the CNN's targets."""
        n = self.n
        return np.stack([self.obj[y : y + n, x : x + n] for y, x in self.positions])


def reconstruct_tile(
    tile: Tile,
    probe: Complex,
    scale: float,
    *,
    n_iter: int = 50,
    alpha: float = 1.0,
    seed: int = 0,
) -> Reconstruction:
    """ePIE on the region ``tile`` covers; ``scale`` = counts per unit intensity (``sim.scale``)."""
    return reconstruct(
        tile.scan, tile.tile, tile.patterns, tile.positions, probe, scale,
        n_iter=n_iter, alpha=alpha, seed=seed,
    )  # fmt: skip


def reconstruct(
    scan: int,
    tile: int,
    patterns: Any,
    positions: Any,
    probe: Complex,
    scale: float,
    *,
    n_iter: int = 50,
    alpha: float = 1.0,
    seed: int = 0,
) -> Reconstruction:
    """:func:`reconstruct_tile` from the raw parts (counts (P, n, n), absolute positions (P, 2)).

    Any number of exposures works (a tile with missing patterns too).
    """
    n = probe.shape[0]
    pos = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    if len(pos) == 0:
        raise ValueError(f"scan {scan} tile {tile}: no patterns to reconstruct")
    origin = pos.min(axis=0)
    rel = pos - origin
    shape = (int(rel[:, 0].max()) + n, int(rel[:, 1].max()) + n)
    counts = np.asarray(patterns, dtype=np.float64).reshape(len(pos), n, n)
    obj = epie(counts / scale, rel, probe, shape, n_iter=n_iter, alpha=alpha, seed=seed)
    weight = illumination(probe, rel, shape)
    return Reconstruction(scan, tile, obj, (int(origin[0]), int(origin[1])), rel, weight, n)
