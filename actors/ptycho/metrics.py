"""Quality of a reconstruction against a reference: registered error, SSIM, PSNR (numpy only).

A ptychographic reconstruction is defined up to a complex scale (global
amplitude and phase), a translation and a linear phase ramp; the error is
taken after removing all of them. :func:`registered_error` is
``‖c·T(e) - t‖ / ‖t‖`` over a weight (or mask), ``T`` the sub-pixel
translation and phase ramp, ``c`` the complex scale fitted by least squares.

>>> import numpy as np
>>> from actors.ptycho.simulate import make_object
>>> truth = make_object((64, 64), seed=1)
>>> y, x = np.indices(truth.shape)
>>> shifted = 0.5 * np.exp(1j * (0.3 + 0.05 * x)) * np.roll(truth, (2, -1), axis=(0, 1))
>>> float(np.linalg.norm(shifted - truth) / np.linalg.norm(truth)) > 0.5
True
>>> registered_error(shifted, truth, border=4) < 1e-6
True

Public API (stable): :func:`registered_error`, :func:`register`,
:func:`complex_scale_errors`, :func:`global_phase_errors`, :func:`ssim`, :func:`psnr`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "complex_scale_errors",
    "global_phase_errors",
    "psnr",
    "register",
    "registered_error",
    "ssim",
]

Array = npt.NDArray[Any]


def _peak(surface: Array) -> tuple[float, float]:
    """Sub-pixel position of the maximum of a periodic surface (parabolic fit, signed)."""
    h, w = surface.shape
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)

    def refine(m: float, c: float, p: float) -> float:
        d = m - 2 * c + p
        return 0.0 if d >= 0 else 0.5 * (m - p) / d

    dy = refine(surface[(iy - 1) % h, ix], surface[iy, ix], surface[(iy + 1) % h, ix])
    dx = refine(surface[iy, (ix - 1) % w], surface[iy, ix], surface[iy, (ix + 1) % w])
    py, px = iy + dy, ix + dx
    return (py - h if py > h / 2 else py), (px - w if px > w / 2 else px)


def _deramp_scale(e: Array, t: Array, w: Array, ramp: bool) -> Array:
    """``e`` with the phase ramp (if ``ramp``) and complex scale that best match ``t``."""
    if ramp:
        y, x = np.indices(t.shape, dtype=np.float64)
        # coarse: the peak of the spectrum of t·conj(e) is the ramp's frequency
        ky, kx = _peak(np.abs(np.fft.fft2(w * t * np.conj(e))))
        e = e * np.exp(2j * np.pi * (ky * y / t.shape[0] + kx * x / t.shape[1]))
        # fine: weighted least squares on the (now small) residual phase
        product = t * np.conj(e)
        phase, wt = np.angle(product), w * np.abs(product)
        basis = np.stack([np.ones_like(y), y, x], axis=-1).reshape(-1, 3)
        sw = np.sqrt(wt.reshape(-1))
        coef, *_ = np.linalg.lstsq(basis * sw[:, None], phase.reshape(-1) * sw, rcond=None)
        e = e * np.exp(1j * (coef[1] * y + coef[2] * x))
    scale = np.sum(w * np.conj(e) * t) / max(float(np.sum(w * np.abs(e) ** 2)), 1e-300)
    return np.asarray(scale * e)


def _error(r: Array, t: Array, w: Array) -> float:
    return float(np.sqrt(np.sum(w * np.abs(r - t) ** 2) / np.sum(w * np.abs(t) ** 2)))


def register(
    estimate: Array,
    truth: Array,
    weight: Array | None = None,
    *,
    translation: bool = True,
    ramp: bool = True,
) -> Array:
    """``estimate`` translated, de-ramped and scaled to best match ``truth`` under ``weight``.

    The translation starts from no shift or the peak of the amplitudes'
    cross-correlation (blind to a phase ramp), whichever fits better,
    refined to 1/16 pixel by a pattern search on the final error.
    """
    e = np.asarray(estimate, dtype=np.complex128)
    t = np.asarray(truth, dtype=np.complex128)
    if e.shape != t.shape:
        raise ValueError(f"estimate {e.shape} and truth {t.shape} must have the same shape")
    w = np.ones(t.shape) if weight is None else np.asarray(weight, dtype=np.float64)
    if not translation:
        return _deramp_scale(e, t, w, ramp)
    at, ae = np.abs(t), np.abs(e)
    a, b = (at - np.sum(w * at) / w.sum()) * w, ae - ae.mean()
    xc = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))).real
    spectrum = np.fft.fft2(e)
    fy = np.fft.fftfreq(t.shape[0])[:, None]
    fx = np.fft.fftfreq(t.shape[1])[None, :]

    def at_shift(d: Array) -> Array:
        shifted = np.fft.ifft2(spectrum * np.exp(-2j * np.pi * (fy * d[0] + fx * d[1])))
        return _deramp_scale(shifted, t, w, ramp)

    best_err = np.inf
    for start in (np.zeros(2), np.rint(_peak(xc))):  # no shift is a candidate too
        r = at_shift(start)
        if (err := _error(r, t, w)) < best_err:
            best, best_r, best_err = start, r, err
    for step in (0.5, 0.25, 0.125, 0.0625):
        moved = True
        while moved:
            moved = False
            for delta in ((step, 0.0), (-step, 0.0), (0.0, step), (0.0, -step)):
                d = best + np.array(delta)
                r = at_shift(d)
                err = _error(r, t, w)
                if err < best_err:
                    best, best_r, best_err, moved = d, r, err, True
    return best_r


def registered_error(
    estimate: Array,
    truth: Array,
    weight: Array | None = None,
    *,
    border: int = 0,
    translation: bool = True,
    ramp: bool = True,
) -> float:
    """Relative error ``‖c·T(e) - t‖ / ‖t‖`` after registration (see the module docstring).

    ``weight`` (or a boolean mask) says where the comparison counts (the
    well-illuminated part of a reconstruction); ``border`` ignores that many
    pixels on each side as well (the FFT shifts wrap around).
    """
    t = np.asarray(truth, dtype=np.complex128)
    w = np.ones(t.shape) if weight is None else np.asarray(weight, dtype=np.float64)
    if border:
        w = w.copy()
        w[:border], w[-border:], w[:, :border], w[:, -border:] = 0, 0, 0, 0
    return _error(register(estimate, t, w, translation=translation, ramp=ramp), t, w)


def complex_scale_errors(estimates: Array, references: Array, weight: Array | None = None) -> Any:
    """Per-image relative error after fitting only a complex scale (batched, shape (B, h, w)).

    The cheap form of :func:`registered_error` for many small patches whose
    alignment is known (a CNN's output against an ePIE patch): removes the
    global amplitude and phase of each estimate.
    """
    e = np.asarray(estimates, dtype=np.complex128)
    t = np.asarray(references, dtype=np.complex128)
    w = np.ones(t.shape[-2:]) if weight is None else np.asarray(weight, dtype=np.float64)
    num = np.sum(w * np.conj(e) * t, axis=(-2, -1))
    den = np.maximum(np.sum(w * np.abs(e) ** 2, axis=(-2, -1)), 1e-300)
    fitted = (num / den)[..., None, None] * e
    err = np.sum(w * np.abs(fitted - t) ** 2, axis=(-2, -1))
    return np.sqrt(err / np.sum(w * np.abs(t) ** 2, axis=(-2, -1)))


def global_phase_errors(estimates: Array, references: Array, weight: Array | None = None) -> Any:
    """Per-image relative error after removing only the global phase (batched, (B, h, w)).

    With a known probe the amplitude's scale is meaningful, so this keeps it:
    a CNN that outputs the right texture at the wrong transmission is wrong.
    """
    e = np.asarray(estimates, dtype=np.complex128)
    t = np.asarray(references, dtype=np.complex128)
    w = np.ones(t.shape[-2:]) if weight is None else np.asarray(weight, dtype=np.float64)
    num = np.sum(w * np.conj(e) * t, axis=(-2, -1))
    unit = np.where(np.abs(num) > 0, num / np.maximum(np.abs(num), 1e-300), 1.0)
    err = np.sum(w * np.abs(unit[..., None, None] * e - t) ** 2, axis=(-2, -1))
    return np.sqrt(err / np.sum(w * np.abs(t) ** 2, axis=(-2, -1)))


def _box(image: Array, size: int) -> Array:
    """Mean over every ``size x size`` window (valid part), by cumulative sums."""
    c = np.cumsum(np.cumsum(np.pad(image, ((1, 0), (1, 0))), axis=0), axis=1)
    s = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return np.asarray(s / (size * size))


def ssim(a: Array, b: Array, data_range: float | None = None, window: int = 7) -> float:
    """Structural similarity of two real images (uniform ``window``, the usual constants).

    >>> import numpy as np
    >>> img = np.linspace(0, 1, 400).reshape(20, 20)
    >>> round(ssim(img, img), 6), ssim(img, img[::-1]) < 0.5
    (1.0, True)
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    span = float(data_range if data_range is not None else max(np.ptp(y), 1e-12))
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    mx, my = _box(x, window), _box(y, window)
    vx = _box(x * x, window) - mx * mx
    vy = _box(y * y, window) - my * my
    cxy = _box(x * y, window) - mx * my
    num = (2 * mx * my + c1) * (2 * cxy + c2)
    den = (mx * mx + my * my + c1) * (vx + vy + c2)
    return float(np.mean(num / den))


def psnr(a: Array, b: Array, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio of ``a`` against the reference ``b``, dB."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    span = float(data_range if data_range is not None else max(np.ptp(y), 1e-12))
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(span * span / mse))
