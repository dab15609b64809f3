"""An LSTM forecaster trained online with pytorch-lightning on CPU (extra ``ml``), Telemanom-style.

Per value: the one-step forecast made at the previous value is compared
with it; the absolute error is smoothed (EWMA, ``smoothing``) and the
**score** is the smoothed error over a dynamic threshold, the mean plus
``z`` standard deviations of the recent smoothed errors (Hundman et al.,
KDD 2018, simplified): 1.0 or more is an anomaly. ``forecast(h)`` runs the
network ``h`` steps ahead on its own outputs.

Training never stalls the input: every ``retrain_every`` values a copy of
the network is trained in a thread on the last ``train_size`` values
(``epochs`` passes, a Lightning ``Trainer`` on CPU) while the monitor keeps
scoring with the current one; the new weights take over exactly
``swap_after`` values later (waiting for the thread only if it is not done
by then), so the same values always give the same scores, and a restored
checkpoint (weights, history, a training in progress) continues identically.
Until the first training ends it scores 0.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

import numpy as np

from diaspora.errors import ConfigError

__all__ = ["LstmForecaster"]

#: torch's seed is global: a network is made (seeded, then initialised) by one thread at a time
_MAKING = threading.Lock()


def _torch() -> tuple[Any, Any]:
    try:
        import pytorch_lightning as pl
        import torch
    except ImportError as exc:
        raise ConfigError(
            "model.kind 'lstm' needs torch and pytorch-lightning: pip install 'diaspora[ml]'"
        ) from exc
    return torch, pl


def _network(torch: Any, pl: Any, hidden: int, lr: float) -> Any:
    class Net(pl.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(1, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, x: Any) -> Any:
            out, _ = self.lstm(x)
            return self.head(out[:, -1, :])

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            return torch.nn.functional.mse_loss(self(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=lr)

    return Net()


class LstmForecaster:
    """See the module docstring; ``threshold`` is 1.0 (smoothed error at the dynamic threshold)."""

    def __init__(
        self,
        window: int = 32,
        horizon: int = 10,
        hidden: int = 32,
        train_size: int = 2000,
        retrain_every: int = 1000,
        first_train: int = 500,
        swap_after: int = 50,
        epochs: int = 1,
        batch_size: int = 64,
        lr: float = 1e-2,
        smoothing: float = 0.05,
        z: float = 4.0,
        errors: int = 500,
        seed: int = 0,
    ) -> None:
        for name, value, low in (
            ("window", window, 2), ("horizon", horizon, 1), ("hidden", hidden, 1),
            ("retrain_every", retrain_every, 1), ("swap_after", swap_after, 0),
            ("epochs", epochs, 1), ("errors", errors, 10),
        ):  # fmt: skip
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"model.{name}: {value!r} must be an integer >= {low}")
        if first_train < window + 2 or train_size < first_train:
            raise ConfigError(
                f"model: need window + 2 <= first_train ({first_train}) "
                f"<= train_size ({train_size})"
            )
        self._torch, self._pl = _torch()
        self.window, self.horizon, self.hidden = window, horizon, hidden
        self.train_size, self.retrain_every, self.first_train = (
            train_size,
            retrain_every,
            first_train,
        )
        self.swap_after, self.epochs, self.batch_size, self.lr = swap_after, epochs, batch_size, lr
        self.smoothing, self.z, self.seed = smoothing, z, seed
        self.threshold = 1.0
        self.history: deque[float] = deque(maxlen=train_size)
        self.errors: deque[float] = deque(maxlen=errors)
        self.n = 0
        self.smoothed: float | None = None
        self.predicted: float | None = None
        self.weights: dict[str, np.ndarray] | None = None
        self.scale = (0.0, 1.0)
        self.training: dict[str, Any] | None = None  # {"at": step, "data": values, "seed": n}
        self._net: Any = None
        self._thread: threading.Thread | None = None
        self._result: tuple[dict[str, np.ndarray], tuple[float, float]] | None = None
        self._path: tuple[int, list[float]] = (-1, [])

    # -- scoring -----------------------------------------------------------------------

    def update(self, t: float, x: float) -> float:
        x = float(x)
        score = 0.0
        if self.predicted is not None:
            error = abs(x - self.predicted)
            s = error if self.smoothed is None else self.smoothed
            self.smoothed = s + self.smoothing * (error - s)
            if len(self.errors) >= 10:
                mean = float(np.mean(self.errors))
                limit = mean + self.z * float(np.std(self.errors))
                score = self.smoothed / limit if limit > 0 else 0.0
            self.errors.append(self.smoothed)
        self.history.append(x)
        self.n += 1
        self._schedule()
        self.predicted = self._forecast(1)[-1] if self._ready() else None
        return score

    def forecast(self, h: int) -> float:
        """The value expected ``h`` steps after the last one (the last value before training)."""
        if not self._ready():
            return self.history[-1] if self.history else 0.0
        if self._path[0] != self.n or len(self._path[1]) < h:  # one trajectory per value seen
            self._path = (self.n, self._forecast(max(h, self.horizon)))
        return self._path[1][h - 1]

    def _ready(self) -> bool:
        return self.weights is not None and len(self.history) >= self.window

    def _forecast(self, h: int) -> list[float]:
        torch = self._torch
        net = self._current()
        mean, std = self.scale
        seq = [(v - mean) / std for v in list(self.history)[-self.window :]]
        out = []
        with torch.no_grad():
            for _ in range(h):
                x = torch.tensor(seq[-self.window :], dtype=torch.float32).view(1, -1, 1)
                y = float(net(x).item())
                seq.append(y)
                out.append(y * std + mean)
        return out

    def _current(self) -> Any:
        if self._net is None:
            assert self.weights is not None
            self._net = self._make(self.weights)
        return self._net

    def _make(self, weights: dict[str, np.ndarray] | None) -> Any:
        torch = self._torch
        with _MAKING:
            torch.manual_seed(self.seed)
            net = _network(torch, self._pl, self.hidden, self.lr)
        if weights is not None:
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        net.eval()
        return net

    # -- training, off the input's path -------------------------------------------------

    def _schedule(self) -> None:
        if self.training is not None and self.n >= self.training["at"] + self.swap_after:
            self._swap()
        due = self.n == self.first_train or (
            self.n > self.first_train and (self.n - self.first_train) % self.retrain_every == 0
        )
        if due and self.training is None:
            self.training = {"at": self.n, "data": list(self.history), "seed": self.seed + self.n}
            self._start()

    def _start(self) -> None:
        assert self.training is not None
        job = dict(self.training)
        self._result = None
        self._thread = threading.Thread(target=self._train, args=(job,), daemon=True)
        self._thread.start()

    def _train(self, job: dict[str, Any]) -> None:
        torch, pl = self._torch, self._pl
        torch.set_num_threads(1)
        data = np.asarray(job["data"], dtype=np.float32)
        mean, std = float(data.mean()), float(data.std()) or 1.0
        z = (data - mean) / std
        w = self.window
        xs = np.stack([z[i : i + w] for i in range(len(z) - w)])[..., None]
        ys = z[w:, None]
        net = self._make(self.weights)
        net.train()
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(torch.from_numpy(xs), torch.from_numpy(ys)),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(job["seed"]),
        )
        trainer = pl.Trainer(
            max_epochs=self.epochs, accelerator="cpu", devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(net, loader)
        weights = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
        self._result = (weights, (mean, std))

    def _swap(self) -> None:
        if self._thread is None:  # restored mid-training: train again, same data and seed
            self._start()
        assert self._thread is not None
        self._thread.join()
        assert self._result is not None
        self.weights, self.scale = self._result
        self._net, self._thread, self._result, self.training = None, None, None, None
        self._path = (-1, [])

    # -- checkpoints ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "history": list(self.history), "errors": list(self.errors), "n": self.n,
            "smoothed": self.smoothed, "predicted": self.predicted, "weights": self.weights,
            "scale": list(self.scale), "training": self.training,
        }  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        self.history = deque((float(v) for v in state["history"]), maxlen=self.train_size)
        self.errors = deque((float(v) for v in state["errors"]), maxlen=self.errors.maxlen)
        self.n, self.smoothed, self.predicted = state["n"], state["smoothed"], state["predicted"]
        weights = state["weights"]
        self.weights = None if weights is None else {k: np.asarray(v) for k, v in weights.items()}
        self.scale = (float(state["scale"][0]), float(state["scale"][1]))
        self.training = state["training"]
        self._net, self._thread, self._result = None, None, None
        self._path = (-1, [])
        if not math.isfinite(self.scale[1]) or self.scale[1] == 0:
            self.scale = (self.scale[0], 1.0)
