"""Streaming anomaly models: one protocol, ``update(t, x) -> score``, and the built-ins.

A model sees one number at a time (``t`` in seconds, ``x`` the value) and
returns its anomaly **score**; the score is anomalous at or above the
model's ``threshold``. A model that can look ahead also has
``forecast(h)``: the value it expects ``h`` steps from now. ``state()`` is
everything it has learnt, as plain data (:mod:`diaspora.codec` encodes it),
and ``restore(state)`` puts it back: a restored model gives the same scores
as the original from then on (that is what a monitor's checkpoint relies on).

>>> model = EwmaZ(alpha=0.05, warmup=10)
>>> scores = [model.update(float(t), 10.0 + (t % 3) * 0.1) for t in range(50)]
>>> max(scores) < model.threshold
True
>>> model.update(50.0, 30.0) >= model.threshold
True
>>> copy = EwmaZ(alpha=0.05, warmup=10)
>>> copy.restore(model.state())
>>> copy.update(51.0, 10.1) == model.update(51.0, 10.1)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np

from diaspora._importpath import resolve
from diaspora.errors import ConfigError

#: the standard deviation below which a flat series is taken to be (as NAB's Gaussian does)
_MIN_STD = 1e-6
#: ``EwmaZ(side=...)``: the sign a deviation scores with (0: its size, either way).
_SIDES: Final = {"both": 0, "up": 1, "down": -1}

__all__ = [
    "EwmaZ",
    "Forecaster",
    "Model",
    "WindowedGaussian",
    "build_model",
    "model_kinds",
]


@runtime_checkable
class Model(Protocol):
    """What a monitor runs per key: scores each value; checkpoints as plain data."""

    #: a score at or above it is an anomaly (``when = "score >= threshold"``)
    threshold: float

    def update(self, t: float, x: float) -> float:
        """Learn ``x`` (seen at time ``t``) and return its anomaly score."""
        ...

    def state(self) -> Any:
        """Everything learnt so far, as data :mod:`diaspora.codec` encodes."""
        ...

    def restore(self, state: Any) -> None:
        """Continue from :meth:`state`'s value (same scores afterwards)."""
        ...


@runtime_checkable
class Forecaster(Model, Protocol):
    """A model that also predicts: the value expected ``h`` steps ahead."""

    def forecast(self, h: int) -> float: ...


class EwmaZ:
    """EWMA z-score, the default model (no dependency, well under a microsecond of work).

    The mean and variance are exponentially weighted with ``alpha`` (pick it
    for the onset time to catch: about ``1/alpha`` steps of memory); the
    score is ``|x - mean| / std`` before ``x`` is learnt. While a value
    scores at or above ``z`` the baseline is frozen (``freeze``), so a slow
    ramp keeps scoring high instead of being absorbed; after ``relearn``
    frozen steps in a row the baseline jumps to the new level. ``side``
    ``"up"`` scores only rises (``(x - mean) / std``, negative below the
    mean), ``"down"`` only falls, ``"both"`` either way: a model's error is
    anomalous when it rises, and a baseline frozen on a fall would keep an
    improvement from being learnt. ``forecast`` is Holt's linear trend
    (level ``alpha_f``, trend ``beta_f``).

    >>> m = EwmaZ(alpha=0.3, warmup=3, side="up")
    >>> [round(m.update(t, x), 1) for t, x in enumerate([1.0, 1.1, 0.9, 1.0, 0.2, 3.0])]
    [0.0, 0.0, 0.0, 0.0, -11.7, 6.0]
    """

    def __init__(
        self,
        alpha: float = 0.01,
        z: float = 4.0,
        warmup: int = 30,
        freeze: bool = False,
        relearn: int = 200,
        alpha_f: float = 0.3,
        beta_f: float = 0.1,
        side: str = "both",
    ) -> None:
        _check(0 < alpha <= 1, "alpha", alpha, "in (0, 1]")
        _check(side in _SIDES, "side", side, f"one of {', '.join(_SIDES)}")
        _check(z > 0, "z", z, "> 0")
        _check(warmup >= 1, "warmup", warmup, ">= 1")
        _check(relearn >= 1, "relearn", relearn, ">= 1")
        _check(
            0 < alpha_f <= 1 and 0 <= beta_f <= 1, "alpha_f/beta_f", (alpha_f, beta_f), "in (0, 1]"
        )
        self.alpha, self.threshold, self.warmup = float(alpha), float(z), int(warmup)
        self.freeze, self.relearn = bool(freeze), int(relearn)
        self.alpha_f, self.beta_f = float(alpha_f), float(beta_f)
        self.sign = _SIDES[side]
        self.n, self.mean, self.var, self.frozen = 0, 0.0, 0.0, 0
        self.level: float | None = None
        self.trend = 0.0

    def update(self, t: float, x: float) -> float:
        x = float(x)
        self._holt(x)
        self.n += 1
        if self.n == 1:
            self.mean = x
            return 0.0
        d = x - self.mean
        score = (abs(d) if self.sign == 0 else self.sign * d) / max(math.sqrt(self.var), _MIN_STD)
        if self.n <= self.warmup:
            self._learn(x, 1.0 / self.n if self.n < 1 / self.alpha else self.alpha)
            return 0.0
        if self.freeze and score >= self.threshold:
            self.frozen += 1
            if self.frozen >= self.relearn:  # a new level, not an episode: learn it
                self.mean, self.frozen = x, 0
            return score
        self.frozen = 0
        self._learn(x, self.alpha)
        return score

    def _learn(self, x: float, a: float) -> None:
        d = x - self.mean
        self.mean += a * d
        self.var = (1 - a) * (self.var + a * d * d)

    def _holt(self, x: float) -> None:
        if self.level is None:
            self.level = x
            return
        previous = self.level
        self.level = self.alpha_f * x + (1 - self.alpha_f) * (previous + self.trend)
        self.trend = self.beta_f * (self.level - previous) + (1 - self.beta_f) * self.trend

    def forecast(self, h: int) -> float:
        """Holt's linear forecast ``h`` steps ahead (the last value's level before any)."""
        return (self.level or 0.0) + h * self.trend

    def state(self) -> dict[str, Any]:
        return {
            "n": self.n, "mean": self.mean, "var": self.var, "frozen": self.frozen,
            "level": self.level, "trend": self.trend,
        }  # fmt: skip

    def restore(self, state: Mapping[str, Any]) -> None:
        self.n, self.mean, self.var = int(state["n"]), float(state["mean"]), float(state["var"])
        self.frozen, self.trend = int(state["frozen"]), float(state["trend"])
        level = state["level"]
        self.level = None if level is None else float(level)


class WindowedGaussian:
    """NAB's windowed Gaussian baseline: the tail probability of ``x`` under the window's normal.

    The last ``window`` values (at most) give a mean and standard deviation,
    recomputed every ``step`` values once the window is full; the score is
    ``1 - Q(|x - mean| / std)`` (``Q`` the normal upper tail), in [0.5, 1].
    The defaults are NAB's (6400, 100); NAB scores it at threshold 1.0.
    The first ``warmup`` values score 0 (NAB: none; its probation hides them).
    ``forecast`` is the least-squares line through the window, extended.
    """

    def __init__(
        self, window: int = 6400, step: int = 100, threshold: float = 1.0, warmup: int = 0
    ) -> None:
        _check(window >= 2, "window", window, ">= 2")
        _check(warmup >= 0, "warmup", warmup, ">= 0")
        self.warmup = int(warmup)
        _check(1 <= step <= window, "step", step, f"in [1, window={window}]")
        self.window, self.step, self.threshold = int(window), int(step), float(threshold)
        self._ring = np.zeros(self.window)  # the window's values; oldest at _head once full
        self._n = self._head = 0
        self.buffer: list[float] = []
        self.mean, self.std = 0.0, _MIN_STD

    def update(self, t: float, x: float) -> float:
        x = float(x)
        score = 0.0
        if self._n > self.warmup or (self._n and self._n == self.window):
            z = abs(x - self.mean) / self.std
            score = 1.0 - 0.5 * math.erfc(z / math.sqrt(2.0))
        if self._n < self.window:
            self._ring[self._n] = x
            self._n += 1
            self._refit()
        else:
            self.buffer.append(x)
            if len(self.buffer) == self.step:
                for value in self.buffer:  # the oldest ``step`` values make way
                    self._ring[self._head] = value
                    self._head = (self._head + 1) % self.window
                self.buffer = []
                self._refit()
        return score

    def _refit(self) -> None:
        values = self._ring[: self._n]
        self.mean, self.std = float(values.mean()), float(values.std()) or _MIN_STD

    def values(self) -> list[float]:
        """The window's values, oldest first, then those waiting for the next step."""
        ring = self._ring[: self._n]
        return [*np.roll(ring, -self._head).tolist(), *self.buffer]

    def forecast(self, h: int) -> float:
        """The window's least-squares line, ``h`` steps past its last value."""
        values = np.asarray(self.values()[-self.window :])
        n = len(values)
        if n < 2:
            return float(values[-1]) if n else 0.0
        slope, intercept = np.polyfit(np.arange(n, dtype=float), values, 1)
        return float(intercept + slope * (n - 1 + h))

    def state(self) -> dict[str, Any]:
        ring = np.roll(self._ring[: self._n], -self._head)
        return {"data": ring, "buffer": list(self.buffer), "mean": self.mean, "std": self.std}

    def restore(self, state: Mapping[str, Any]) -> None:
        data = np.asarray(state["data"], dtype=float)
        self._ring = np.zeros(self.window)
        self._ring[: len(data)] = data
        self._n, self._head = len(data), 0
        self.buffer = [float(v) for v in state["buffer"]]
        self.mean, self.std = float(state["mean"]), float(state["std"])


def _check(ok: bool, field: str, value: object, what: str) -> None:
    if not ok:
        raise ConfigError(f"model.{field}: {value!r} must be {what}")


def model_kinds() -> dict[str, str]:
    """The built-in model kinds and where each lives (``lstm`` and ``hst`` need extras)."""
    return {
        "ewma_z": "diaspora.predict._models:EwmaZ",
        "gaussian": "diaspora.predict._models:WindowedGaussian",
        "hst": "diaspora.predict._hst:HalfSpaceTrees",
        "lstm": "diaspora.predict._lstm:LstmForecaster",
    }


def build_model(config: Mapping[str, Any] | str | None, *, where: str = "model") -> Model:
    """A fresh model from a config: ``{"kind": "ewma_z", "alpha": 0.01}``, a kind or a path.

    ``kind`` is a built-in (:func:`model_kinds`) or ``"pkg.mod:Cls"``; the other
    keys are the class's keyword arguments.

    >>> build_model({"kind": "gaussian", "window": 100, "step": 10}).window
    100
    >>> build_model({"kind": "ewma", "z": 3})
    Traceback (most recent call last):
    ...
    diaspora.errors.ConfigError: model.kind: 'ewma' is neither a built-in (ewma_z, gaussian, ...
    """
    if config is None:
        config = {"kind": "ewma_z"}
    if isinstance(config, str):
        config = {"kind": config}
    if not isinstance(config, Mapping):
        raise ConfigError(f'{where}: {config!r} is not a table like {{ kind = "ewma_z" }}')
    params = {k: v for k, v in config.items() if k != "kind"}
    kind = config.get("kind", "ewma_z")
    kinds = model_kinds()
    if not isinstance(kind, str) or (kind not in kinds and ":" not in kind):
        raise ConfigError(
            f"{where}.kind: {kind!r} is neither a built-in ({', '.join(kinds)}) "
            "nor an import path 'pkg.mod:Cls'"
        )
    cls = resolve(kinds.get(kind, kind), where=f"{where}.kind")
    try:
        model = cls(**params)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    except TypeError as exc:
        raise ConfigError(f"{where}: {kind!r} does not take {sorted(params)}: {exc}") from exc
    for method in ("update", "state", "restore"):
        if not callable(getattr(model, method, None)):
            raise ConfigError(
                f"{where}.kind: {kind!r} has no {method}() (a model needs update(t, x) -> score, "
                "state() and restore(state); forecast(h) is optional)"
            )
    if not isinstance(getattr(model, "threshold", None), int | float):
        raise ConfigError(f"{where}.kind: {kind!r} has no numeric threshold attribute")
    return model  # type: ignore[no-any-return]
