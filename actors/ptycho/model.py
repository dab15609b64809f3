"""A PtychoNN-style CNN (pattern -> amplitude and phase), its online trainer and checkpoints.

:class:`PtychoNN` is a ``LightningModule`` after Cherukara et al. (2020):
an encoder of ``depth`` x [conv3x3, ReLU, conv3x3, ReLU, maxpool] blocks
(``nconv``, 2·``nconv``, 4·``nconv`` filters) and two decoders of the same
depth with bilinear upsampling, the amplitude ending in a sigmoid and the
phase in ``tanh · pi``; L1 loss under the probe's footprint, Adam.
:func:`prepare` turns photon counts into the network's input (centred,
``log1p``, scaled to max 1); :func:`targets` turns object patches (ePIE's or
the truth) into (amplitude, phase) targets with their weighted mean phase
removed.

:class:`OnlineTrainer` trains from (pattern, target) samples as they come:
a bounded replay buffer, ``train(steps)`` through a ``pytorch_lightning``
``Trainer`` (the Adam state carries over between rounds: a warm start), a
**version** that grows by one with every round of training, and checkpoints
as bytes (:meth:`OnlineTrainer.save` / :meth:`OnlineTrainer.load` for the
trainer, :meth:`OnlineTrainer.model_bytes` / :func:`load_model` for the
edge, which needs only the weights). :func:`infer` runs batched CPU
inference; :func:`validation_error` is the mean per-patch error against
references after fitting a complex scale (the metric the edge's switch uses).

>>> import numpy as np
>>> from actors.ptycho.simulate import ScanConfig, Simulator
>>> sim = Simulator(ScanConfig(grid=4, tile_side=4))
>>> tile = sim.tile(0, 0)
>>> truth = np.stack([sim.patch(sim.obj(0), p) for p in tile.positions])
>>> trainer = OnlineTrainer(probe=sim.probe, seed=0)
>>> amp, phase = targets(truth, trainer.weight)
>>> trainer.add(tile.patterns, amp, phase)
>>> trainer.version, trainer.train(steps=2) > 0, trainer.version
(0, True, 1)
>>> model, version = load_model(trainer.model_bytes())
>>> a, p = infer(model, tile.patterns, batch_size=8)
>>> a.shape, p.shape, version
((16, 64, 64), (16, 64, 64), 1)

Public API (stable): :class:`ModelConfig`, :class:`PtychoNN`,
:class:`OnlineTrainer` (``add``, ``train``, ``evaluate``, ``save``, ``load``,
``model_bytes``, ``version``, ``samples_seen``, ``buffered``, ``weight``),
:func:`prepare`, :func:`targets`, :func:`infer`, :func:`load_model`,
:func:`validation_error`, :func:`footprint`.
"""

from __future__ import annotations

import io
import itertools
import logging
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from actors.ptycho.metrics import global_phase_errors

__all__ = [
    "ModelConfig",
    "OnlineTrainer",
    "PtychoNN",
    "footprint",
    "infer",
    "load_model",
    "prepare",
    "targets",
    "validation_error",
]

Array = npt.NDArray[Any]

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
    logging.getLogger(_name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*LightningModule.*TPU.*")
warnings.filterwarnings("ignore", message=r".*litlogger.*")
warnings.filterwarnings("ignore", message=r".*validation_step.*but have no .val_dataloader.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The network's shape and learning rate (``nconv`` 16, depth 3: ~0.5 M parameters)."""

    n: int = 64  #: input side; must be divisible by 2**depth
    nconv: int = 16
    depth: int = 3
    lr: float = 1e-3
    #: the input is ``input_scale · log1p(counts)`` (1/8 puts 1e6-photon patterns near 1); a
    #: fixed scale, not per pattern, so the total counts (the transmission) stay visible
    input_scale: float = 0.125

    def __post_init__(self) -> None:
        if self.n % (2**self.depth):
            raise ValueError(f"ModelConfig.n: {self.n} must be divisible by 2**depth")
        if self.nconv < 1 or self.depth < 1:
            raise ValueError("ModelConfig.nconv and depth must be >= 1")


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    ]


def _decoder(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cin, cout in itertools.pairwise(widths):
        layers += [*_block(cin, cout), nn.Upsample(scale_factor=2, mode="bilinear")]
    layers.append(nn.Conv2d(widths[-1], 1, 3, padding=1))
    return nn.Sequential(*layers)


class PtychoNN(pl.LightningModule):
    """Pattern (B, 1, n, n) -> amplitude (B, n, n) in (0, 1) and phase (B, n, n) in (-pi, pi)."""

    def __init__(self, config: ModelConfig | None = None, weight: Array | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        widths = [c.nconv * 2**i for i in range(c.depth)]
        layers: list[nn.Module] = []
        for cin, cout in zip([1, *widths[:-1]], widths, strict=True):
            layers += [*_block(cin, cout), nn.MaxPool2d(2)]
        self.encoder = nn.Sequential(*layers)
        up = [widths[-1], *reversed(widths)]
        self.amplitude_head = _decoder(up)
        self.phase_head = _decoder(up)
        w = np.ones((c.n, c.n)) if weight is None else np.asarray(weight, dtype=np.float64)
        self.register_buffer("loss_weight", torch.as_tensor(w / w.mean(), dtype=torch.float32))
        self._optimizer: torch.optim.Optimizer | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        amplitude = torch.sigmoid(self.amplitude_head(z))[:, 0]
        phase = torch.pi * torch.tanh(self.phase_head(z))[:, 0]
        return amplitude, phase

    def loss(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, amplitude, phase = batch
        pred: tuple[torch.Tensor, torch.Tensor] = self(x)
        w = self.get_buffer("loss_weight")
        loss: torch.Tensor = ((pred[0] - amplitude).abs() * w).mean()
        return loss + ((pred[1] - phase).abs() * w).mean()

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("train_loss", loss, prog_bar=False, logger=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        self.log("val_loss", loss, prog_bar=False, logger=False)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # one Adam for the module's life: each online round continues its moments (warm start)
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.parameters(), lr=self.config.lr)
        return self._optimizer


def footprint(probe: Array, fraction: float = 0.1) -> Array:
    """Where ``|probe|^2`` is at least ``fraction`` of its max: what one pattern tells about."""
    power = np.abs(probe) ** 2
    return np.asarray(power >= fraction * power.max(), dtype=np.float64)


def prepare(patterns: Array, input_scale: float = 0.125) -> torch.Tensor:
    """Photon counts (B, n, n), DC at the corner -> the input (B, 1, n, n): centred,
    ``input_scale · log1p(counts)``."""
    x = np.log1p(np.fft.fftshift(np.asarray(patterns, dtype=np.float32), axes=(-2, -1)))
    x = x.reshape(-1, 1, *x.shape[-2:]) * np.float32(input_scale)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def targets(patches: Array, weight: Array | None = None) -> tuple[Array, Array]:
    """Object patches (K, n, n) complex -> (amplitude, phase) float32, mean phase removed.

    The mean is the ``weight``-weighted one (the probe's footprint), as
    PtychoNN removes the mean phase of its targets.
    """
    p = np.asarray(patches, dtype=np.complex128)
    w = np.ones(p.shape[-2:]) if weight is None else np.asarray(weight)
    mean = np.sum(w * p, axis=(-2, -1), keepdims=True)
    aligned = p * np.exp(-1j * np.angle(mean))
    return np.abs(aligned).astype(np.float32), np.angle(aligned).astype(np.float32)


def infer(model: PtychoNN, patterns: Array, batch_size: int = 64) -> tuple[Array, Array]:
    """Amplitude and phase (B, n, n) float32 of counts (B, n, n), in batches, on CPU, no grad."""
    model.eval()
    x = prepare(patterns, model.config.input_scale)
    amps, phases = [], []
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            a, p = model(x[start : start + batch_size])
            amps.append(a.numpy())
            phases.append(p.numpy())
    n = x.shape[-1]
    if not amps:
        return np.zeros((0, n, n), np.float32), np.zeros((0, n, n), np.float32)
    return np.concatenate(amps), np.concatenate(phases)


def validation_error(
    model: PtychoNN, patterns: Array, amplitude: Array, phase: Array, weight: Array | None = None
) -> float:
    """Mean per-patch relative error of the model's objects against references (global phase
    removed per patch, under ``weight``): against ePIE's patches or the known object's."""
    a, p = infer(model, patterns)
    pred = a * np.exp(1j * p)
    ref = np.asarray(amplitude) * np.exp(1j * np.asarray(phase))
    return float(np.mean(global_phase_errors(pred, ref, weight)))


def _trainer(steps: int, callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        callbacks=callbacks,
        max_steps=steps,
        max_epochs=-1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


class OnlineTrainer:
    """Trains a :class:`PtychoNN` online from samples, versioned, checkpointed as bytes."""

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        probe: Array | None = None,
        buffer: int = 512,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        self.config = config or ModelConfig()
        n = self.config.n
        self.weight = footprint(probe) if probe is not None else np.ones((n, n))
        torch.manual_seed(seed)
        self.model = PtychoNN(self.config, self.weight)
        self.capacity, self.batch_size, self.seed = buffer, batch_size, seed
        self.version = 0  #: rounds of training so far (0: untrained)
        self.samples_seen = 0  #: samples ever added
        self.steps = 0  #: optimizer steps so far
        self._x = torch.zeros((0, 1, n, n))
        self._a = torch.zeros((0, n, n))
        self._p = torch.zeros((0, n, n))

    @property
    def buffered(self) -> int:
        """Samples in the replay buffer (the newest ``buffer`` ones)."""
        return len(self._x)

    def add(self, patterns: Array, amplitude: Array, phase: Array) -> None:
        """Add samples (counts (B, n, n) with their targets (B, n, n)) to the replay buffer."""
        x = prepare(patterns, self.config.input_scale)
        a = torch.as_tensor(np.asarray(amplitude, np.float32)).reshape(-1, *x.shape[-2:])
        p = torch.as_tensor(np.asarray(phase, np.float32)).reshape(-1, *x.shape[-2:])
        if not len(x) == len(a) == len(p):
            raise ValueError(f"{len(x)} patterns but {len(a)} amplitudes and {len(p)} phases")
        keep = self.capacity
        self._x = torch.cat([self._x, x])[-keep:]
        self._a = torch.cat([self._a, a])[-keep:]
        self._p = torch.cat([self._p, p])[-keep:]
        self.samples_seen += len(x)

    def train(self, steps: int) -> float:
        """``steps`` optimizer steps on random batches of the buffer; the mean loss. One more
        version if any step ran."""
        if steps < 1 or self.buffered == 0:
            return float("nan")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.steps)
        size = min(self.batch_size, self.buffered)
        idx = torch.randint(0, self.buffered, (steps * size,), generator=g)
        data = TensorDataset(self._x[idx], self._a[idx], self._p[idx])
        losses: list[float] = []

        class _Record(pl.Callback):
            def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
                outputs = args[2]
                losses.append(float(outputs["loss"]))

        trainer = _trainer(steps, [_Record()])
        self.model.train()
        trainer.fit(self.model, DataLoader(data, batch_size=size, shuffle=False))
        self.steps += steps
        self.version += 1
        return float(np.mean(losses)) if losses else float("nan")

    def evaluate(self, patterns: Array, amplitude: Array, phase: Array) -> float:
        """:func:`validation_error` of the current model under the probe's footprint."""
        return validation_error(self.model, patterns, amplitude, phase, self.weight)

    def model_bytes(self) -> bytes:
        """The weights, config and version: what the edge loads with :func:`load_model`."""
        buf = io.BytesIO()
        torch.save(
            {"config": asdict(self.config), "weight": self.weight, "version": self.version,
             "state": self.model.state_dict()},
            buf,
        )  # fmt: skip
        return buf.getvalue()

    def save(self, *, with_buffer: bool = False) -> bytes:
        """The whole trainer: weights, Adam state, counters (and the replay buffer if
        ``with_buffer``; without it a loaded trainer refills its buffer from new samples)."""
        opt = self.model.configure_optimizers()
        buf = io.BytesIO()
        buffer = (self._x, self._a, self._p) if with_buffer else None
        torch.save(
            {
                "buffer": buffer,
                "config": asdict(self.config),
                "weight": self.weight,
                "version": self.version,
                "samples_seen": self.samples_seen,
                "steps": self.steps,
                "capacity": self.capacity,
                "batch_size": self.batch_size,
                "seed": self.seed,
                "state": self.model.state_dict(),
                "optimizer": opt.state_dict(),
            },
            buf,
        )
        return buf.getvalue()

    @classmethod
    def load(cls, data: bytes) -> OnlineTrainer:
        """A trainer from :meth:`save`'s bytes: training continues where it stopped."""
        blob = torch.load(io.BytesIO(data), weights_only=False)
        self = cls(
            ModelConfig(**blob["config"]),
            buffer=blob["capacity"],
            batch_size=blob["batch_size"],
            seed=blob["seed"],
        )
        self.weight = blob["weight"]
        self.model = PtychoNN(self.config, self.weight)
        self.model.load_state_dict(blob["state"])
        self.model.configure_optimizers().load_state_dict(blob["optimizer"])
        if blob["buffer"] is not None:
            self._x, self._a, self._p = blob["buffer"]
        self.version, self.samples_seen, self.steps = (
            blob["version"], blob["samples_seen"], blob["steps"],
        )  # fmt: skip
        return self


def load_model(data: bytes) -> tuple[PtychoNN, int]:
    """The model and its version from :meth:`OnlineTrainer.model_bytes` (or ``save``) bytes."""
    blob = torch.load(io.BytesIO(data), weights_only=False)
    model = PtychoNN(ModelConfig(**blob["config"]), blob["weight"])
    model.load_state_dict(blob["state"])
    model.eval()
    return model, int(blob["version"])
