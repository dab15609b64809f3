"""A detector simulator: a known object, a probe, a scan with jitter, Poisson far-field patterns.

Everything is a pure function of a :class:`ScanConfig` (numpy only, no
downloads): scan ``s`` of a config has its own object (a deterministic
synthetic image: smooth random amplitude in 0.7-1 and phase within ±0.5
rad; from scan ``change_at`` on, a changed sample: phase within
±``changed_phase`` rad, features of ``changed_feature`` px, the drift a
model trained on the first sample meets), a raster or spiral scan with
integer jitter, and far-field patterns
``|FFT(probe · object patch)|²`` (``norm="ortho"``, DC at the corner) scaled
so that an exposure through free space holds ``photons`` counts on average,
with Poisson noise. Positions are grouped in **tiles**: K neighbouring
positions (a ``tile_side x tile_side`` block of a raster scan, or K
consecutive positions along the spiral) whose reconstruction is one
training target. Patterns come tile after tile, in the order of
:meth:`Simulator.frames`.

>>> sim = Simulator(ScanConfig(grid=4, tile_side=2, photons=1e5, seed=3))
>>> sim.k, sim.tiles_per_scan, sim.probe.shape
(4, 4, (64, 64))
>>> tile = sim.tile(scan=0, tile=1)
>>> tile.patterns.shape, tile.patterns.dtype, tile.positions.shape
((4, 64, 64), dtype('float32'), (4, 2))
>>> frame = next(iter(sim.frames(scans=1)))
>>> (frame.scan, frame.tile, frame.index, frame.pattern.shape)
(0, 0, 0, (64, 64))

Public API (stable): :class:`ScanConfig`, :class:`Simulator` (``probe``,
``k``, ``tiles_per_scan``, ``frames_per_scan``, ``obj``, ``positions``,
``tile_indices``, ``intensity``, ``tile``, ``tiles``, ``frames``,
``patch``), :class:`Tile`, :class:`Frame`, :func:`make_probe`,
:func:`make_object`, :func:`far_field`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "Frame",
    "ScanConfig",
    "Simulator",
    "Tile",
    "far_field",
    "make_object",
    "make_probe",
]

Complex = npt.NDArray[np.complex128]
Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

_KINDS = ("raster", "spiral")


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """What the simulated instrument does; every field has a default that works at 64x64.

    ``ScanConfig.of(table)`` builds one from a mapping (a workflow file's
    ``args``), naming any unknown or bad field.
    """

    n: int = 64  #: pattern side, pixels (also the probe's and the CNN's input side)
    kind: str = "raster"  #: "raster" or "spiral"
    grid: int = 8  #: a scan has grid x grid positions
    step: int = 6  #: pixels between neighbouring positions
    jitter: int = 1  #: each position moves by a random integer in [-jitter, jitter] on each axis
    tile_side: int = 4  #: a tile is tile_side x tile_side positions: K = tile_side²
    photons: float = 1e6  #: mean counts of an exposure through free space
    pupil_radius: float = 10.0  #: radius of the probe's circular pupil, frequency pixels
    defocus: float = 4.0  #: defocus phase at the pupil's edge, radians
    feature: float = 2.5  #: the object's smoothness (Gaussian sigma, pixels)
    seed: int = 0  #: every random draw (object, jitter, noise) follows from it
    #: the sample changes from this scan on (None: never): a drift for the edge's model
    change_at: int | None = None
    changed_phase: float = 1.5  #: the changed sample's phase half-range, rad (first: 0.5)
    changed_feature: float = 1.0  #: the changed sample's smoothness, pixels

    def __post_init__(self) -> None:
        where = "ScanConfig"
        if self.change_at is not None and int(self.change_at) < 0:
            raise ValueError(f"{where}.change_at: {self.change_at!r} must be a scan >= 0")
        if not 0 < self.changed_phase < np.pi:
            raise ValueError(f"{where}.changed_phase: {self.changed_phase!r} must be in (0, pi)")
        if not self.changed_feature > 0:
            raise ValueError(f"{where}.changed_feature: {self.changed_feature!r} must be > 0")
        if self.kind not in _KINDS:
            raise ValueError(f"{where}.kind: {self.kind!r} is not one of {', '.join(_KINDS)}")
        for name in ("n", "grid", "step", "tile_side"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{where}.{name}: {getattr(self, name)!r} must be >= 1")
        if self.jitter < 0:
            raise ValueError(f"{where}.jitter: {self.jitter!r} must be >= 0")
        if self.kind == "raster" and self.grid % self.tile_side:
            raise ValueError(
                f"{where}.tile_side: {self.tile_side} must divide grid ({self.grid}) for a "
                "raster scan"
            )
        if (self.grid * self.grid) % (self.tile_side * self.tile_side):
            raise ValueError(f"{where}: grid² must be a multiple of K = tile_side²")
        if not self.photons > 0:
            raise ValueError(f"{where}.photons: {self.photons!r} must be > 0")
        if not 0 < self.pupil_radius < self.n / 2:
            raise ValueError(f"{where}.pupil_radius: {self.pupil_radius!r} must be in (0, n/2)")

    @classmethod
    def of(cls, table: dict[str, Any] | ScanConfig | None = None, **extra: Any) -> ScanConfig:
        """A config from a mapping (unknown keys are a ``ValueError`` naming them)."""
        if isinstance(table, ScanConfig):
            return table if not extra else ScanConfig(**{**table.as_dict(), **extra})
        merged = {**(table or {}), **extra}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"ScanConfig: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**merged)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain mapping (for messages and workflow files)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Tile:
    """K neighbouring exposures of one scan: one reconstruction, one training target."""

    scan: int
    tile: int
    indices: Ints  #: the positions' indices in the scan (frame order)
    positions: Ints  #: (K, 2) integer top-left corners (y, x) in the scan's object
    patterns: Floats  #: (K, n, n) photon counts


@dataclass(frozen=True, slots=True)
class Frame:
    """One exposure as the detector emits it."""

    scan: int
    tile: int
    index: int  #: position index in the scan (frames of a scan come in this order)
    position: tuple[int, int]  #: top-left corner (y, x) in the scan's object
    pattern: Floats = field(repr=False)  #: (n, n) photon counts


def make_probe(n: int = 64, pupil_radius: float = 10.0, defocus: float = 4.0) -> Complex:
    """The probe: inverse FFT of a circular pupil times a defocus phase, centred, max |p| = 1."""
    f = np.fft.fftfreq(n) * n
    rho = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    pupil = (rho <= pupil_radius) * np.exp(1j * defocus * (rho / pupil_radius) ** 2)
    probe = np.fft.fftshift(np.fft.ifft2(pupil))
    return np.asarray(probe / np.abs(probe).max(), dtype=np.complex128)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> Any:
    """Gaussian-filtered white noise (FFT filter, periodic), scaled to [0, 1]."""
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    smooth = np.fft.ifft2(np.fft.fft2(noise) * kernel).real
    lo, hi = smooth.min(), smooth.max()
    return (smooth - lo) / (hi - lo)


def make_object(
    shape: tuple[int, int], seed: int | list[int], feature: float = 2.5, phase_range: float = 0.5
) -> Complex:
    """A synthetic object: amplitude 0.7-1 and phase within ±``phase_range`` rad, smooth at
    ``feature`` px."""
    rng = np.random.default_rng(seed)
    amplitude = 0.7 + 0.3 * _smooth_field(rng, shape, feature)
    phase = phase_range * (2.0 * _smooth_field(rng, shape, feature) - 1.0)
    return np.asarray(amplitude * np.exp(1j * phase), dtype=np.complex128)


def far_field(probe: Complex, obj: Complex, positions: Ints, scale: float = 1.0) -> Any:
    """Noise-free intensities ``scale · |FFT(probe · obj[y:y+n, x:x+n])|²``, shape (P, n, n)."""
    n = probe.shape[0]
    exits = np.stack([probe * obj[y : y + n, x : x + n] for y, x in positions])
    return scale * np.abs(np.fft.fft2(exits, norm="ortho")) ** 2


class Simulator:
    """The instrument of a :class:`ScanConfig`: probe, objects, scans, tiles and frames."""

    def __init__(self, config: ScanConfig | None = None) -> None:
        self.config = config or ScanConfig()

    @cached_property
    def probe(self) -> Complex:
        """The (known) probe, (n, n) complex, max amplitude 1."""
        c = self.config
        return make_probe(c.n, c.pupil_radius, c.defocus)

    @cached_property
    def scale(self) -> float:
        """Counts per unit of ``|FFT(probe · object)|²``: free space gives ``photons`` counts."""
        return float(self.config.photons / np.sum(np.abs(self.probe) ** 2))

    @property
    def k(self) -> int:
        """Positions per tile (K)."""
        return self.config.tile_side**2

    @property
    def frames_per_scan(self) -> int:
        return self.config.grid**2

    @property
    def tiles_per_scan(self) -> int:
        return self.frames_per_scan // self.k

    @cached_property
    def _nominal(self) -> tuple[Any, tuple[int, int]]:
        """Positions before jitter, in frame order (tile-major), and the object's shape."""
        c = self.config
        margin = c.jitter
        if c.kind == "raster":
            t, blocks = c.tile_side, c.grid // c.tile_side
            rows = [
                (by * t + i, bx * t + j)
                for by in range(blocks)
                for bx in range(blocks)
                for i in range(t)
                for j in range(t)
            ]
            pos = np.array(rows, dtype=np.float64) * c.step
        else:  # an Archimedean spiral, one step between positions and between turns
            points, theta = [], 0.0
            for _ in range(c.grid * c.grid):
                r = c.step * theta / (2 * np.pi)
                points.append((r * np.sin(theta), r * np.cos(theta)))
                theta += c.step / max(r, c.step / 2) if r > 0 else 2 * np.pi / 6
            pos = np.array(points)
            pos -= pos.min(axis=0)
        ipos = np.rint(pos).astype(np.int64) + margin
        extent = ipos.max(axis=0) + c.n + margin
        return ipos, (int(extent[0]), int(extent[1]))

    @property
    def object_shape(self) -> tuple[int, int]:
        """Shape of every scan's object."""
        return self._nominal[1]

    def obj(self, scan: int) -> Complex:
        """The known object of ``scan`` (complex, :attr:`object_shape`): of the changed sample
        from scan ``change_at`` on."""
        c, seed = self.config, [self.config.seed, scan, 0]
        if c.change_at is not None and scan >= c.change_at:
            return make_object(self.object_shape, seed, c.changed_feature, c.changed_phase)
        return make_object(self.object_shape, seed, c.feature)

    def positions(self, scan: int) -> Ints:
        """(P, 2) integer top-left corners of ``scan``'s exposures, in frame order."""
        c = self.config
        nominal = self._nominal[0]
        rng = np.random.default_rng([c.seed, scan, 1])
        shift = rng.integers(-c.jitter, c.jitter + 1, size=nominal.shape)
        return np.asarray(nominal + shift, dtype=np.int64)

    def tile_indices(self, tile: int) -> Ints:
        """The frame indices of ``tile`` (the same in every scan)."""
        if not 0 <= tile < self.tiles_per_scan:
            raise IndexError(f"tile {tile} is not in 0..{self.tiles_per_scan - 1}")
        return np.arange(tile * self.k, (tile + 1) * self.k, dtype=np.int64)

    def intensity(self, scan: int, indices: Ints | None = None) -> Any:
        """Noise-free expected counts of ``scan``'s exposures (all, or ``indices``)."""
        pos = self.positions(scan)
        pos = pos if indices is None else pos[indices]
        return far_field(self.probe, self.obj(scan), pos, self.scale)

    def _counts(self, scan: int, tile: int, expected: Any) -> Floats:
        rng = np.random.default_rng([self.config.seed, scan, 2, tile])
        counts: Floats = rng.poisson(expected).astype(np.float32)
        return counts

    def tile(self, scan: int, tile: int) -> Tile:
        """Tile ``tile`` of ``scan``, with its Poisson patterns (seeded by scan and tile)."""
        idx = self.tile_indices(tile)
        pos = self.positions(scan)[idx]
        expected = far_field(self.probe, self.obj(scan), pos, self.scale)
        return Tile(scan, tile, idx, pos, self._counts(scan, tile, expected))

    def tiles(self, scans: int = 1, first_scan: int = 0) -> Iterator[Tile]:
        """Every tile of scans ``first_scan .. first_scan + scans - 1``, in order."""
        for scan in range(first_scan, first_scan + scans):
            obj, positions = self.obj(scan), self.positions(scan)
            for t in range(self.tiles_per_scan):
                idx = self.tile_indices(t)
                expected = far_field(self.probe, obj, positions[idx], self.scale)
                yield Tile(scan, t, idx, positions[idx], self._counts(scan, t, expected))

    def frames(self, scans: int = 1, first_scan: int = 0) -> Iterator[Frame]:
        """The detector's output: every exposure of the scans, tile after tile."""
        for tile in self.tiles(scans, first_scan):
            for i, index in enumerate(tile.indices):
                y, x = (int(v) for v in tile.positions[i])
                yield Frame(tile.scan, tile.tile, int(index), (y, x), tile.patterns[i])

    def frame(self, scan: int, index: int) -> Frame:
        """Exposure ``index`` of ``scan`` (the same pattern :meth:`frames` yields)."""
        tile = self.tile(scan, index // self.k)
        i = index % self.k
        y, x = (int(v) for v in tile.positions[i])
        return Frame(scan, tile.tile, index, (y, x), tile.patterns[i])

    def patch(self, obj: Complex, position: tuple[int, int] | Ints) -> Complex:
        """The n x n patch of ``obj`` an exposure at ``position`` illuminates."""
        y, x = (int(v) for v in position)
        n = self.config.n
        return obj[y : y + n, x : x + n]
