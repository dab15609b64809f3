"""river's ``HalfSpaceTrees`` as a monitor model (the optional extra ``predict``: river).

Half-space trees need each feature's range up front. The model collects
its first ``window_size`` values (scoring them 0), sets the range of ``x``
to theirs widened by ``margin`` spans on each side, then grows the trees
on those values and scores every later value before learning it. The
score is river's, in [0, 1]; the default threshold (0.97 for 25 trees of
height 6) suits a noisy level. river is imported when the model is made,
so the rest of :mod:`diaspora.predict` never needs it.
"""

from __future__ import annotations

import pickle
from typing import Any

from diaspora.errors import ConfigError

__all__ = ["HalfSpaceTrees"]


class HalfSpaceTrees:
    """river ``HalfSpaceTrees`` over ``x``; ``state()`` holds the pickled trees.

    About 100 times the cost of :class:`~diaspora.predict.EwmaZ` per value
    and, on a single series, later and noisier (docs/predict.md): use it
    for what EWMA cannot see (multi-modal levels).
    """

    def __init__(
        self,
        n_trees: int = 25,
        height: int = 6,
        window_size: int = 250,
        seed: int = 42,
        threshold: float = 0.97,
        margin: float = 1.0,
    ) -> None:
        try:
            from river import anomaly
        except ImportError as exc:
            raise ConfigError(
                "model.kind 'hst' needs river: pip install 'diaspora[predict]' (or river)"
            ) from exc
        self._anomaly = anomaly
        self.threshold, self.margin = float(threshold), float(margin)
        self.params = {
            "n_trees": n_trees,
            "height": height,
            "window_size": window_size,
            "seed": seed,
        }
        self.warm: list[float] = []
        self.trees: Any = None

    def update(self, t: float, x: float) -> float:
        x = float(x)
        if self.trees is None:
            self.warm.append(x)
            if len(self.warm) == self.params["window_size"]:
                lo, hi = min(self.warm), max(self.warm)
                span = (hi - lo) or 1.0
                limits: dict[Any, tuple[float, float]] = {
                    "x": (lo - self.margin * span, hi + self.margin * span)
                }
                self.trees = self._anomaly.HalfSpaceTrees(limits=limits, **self.params)
                for value in self.warm:
                    self.trees.learn_one({"x": value})
                self.warm = []
            return 0.0
        score = float(self.trees.score_one({"x": x}))
        self.trees.learn_one({"x": x})
        return score

    def state(self) -> dict[str, Any]:
        trees = None if self.trees is None else pickle.dumps(self.trees)
        return {"warm": list(self.warm), "trees": trees}

    def restore(self, state: dict[str, Any]) -> None:
        self.warm = [float(v) for v in state["warm"]]
        # our own checkpoint's bytes, written by state() above: not foreign input
        self.trees = None if state["trees"] is None else pickle.loads(state["trees"])
