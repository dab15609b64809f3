"""The edge's inference actor and its switch between "send all" and "infer at the edge"."""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np

from actors.ptycho._control import CONTROL
from actors.ptycho.simulate import ScanConfig
from diaspora import Actor, Message

__all__ = ["EdgeInference", "Mode", "Switch", "sampled"]

FRAMES = "ptycho.frames"
UPLINK = "ptycho.diff"
MODELS = "ptycho.model"
QUALITY = "ptycho.quality"
IMAGES = "ptycho.edge_images"
STATUS = "ptycho.edge_status"


class Mode(enum.Enum):
    """What the edge does with a frame."""

    SEND_ALL = "send_all"  #: forward every frame to the HPC site
    INFER = "infer"  #: infer every frame at the edge, forward a sampled subset of tiles


@dataclass
class Switch:
    """The edge's decision: infer once the model's error against ePIE is at most ``bound``,
    go back to sending all when it drifts above ``bound · hysteresis``.

    The error is the mean of the last ``window`` reports (a model update's
    validation error counts as one report); models only move forward in version.

    >>> s = Switch(bound=0.2, window=2)
    >>> s.model(version=1, error=0.5), s.mode.value
    (True, 'send_all')
    >>> s.model(version=2, error=0.1), s.report(0.1), s.mode.value
    (True, 'infer', 'infer')
    >>> s.model(version=1, error=0.0), s.version  # an older version is ignored
    (False, 2)
    >>> s.report(0.3), s.report(0.6), s.mode.value  # drifted above 0.25: back to sending all
    ('infer', 'send_all', 'send_all')
    >>> s.hold(True), s.report(0.0), s.report(0.0), s.mode.value  # a monitor holds it back
    (None, 'send_all', 'send_all', 'send_all')
    >>> s.hold(False), s.report(0.0), s.mode.value  # released: its own rule again
    (None, 'infer', 'infer')
    """

    bound: float
    hysteresis: float = 1.25
    window: int = 4
    mode: Mode = Mode.SEND_ALL
    version: int = 0  #: the model version the edge runs (0: none yet)
    errors: deque[float] = field(default_factory=deque)
    held: bool = False  #: a monitor saw the error drift: send all until it resolves

    def hold(self, on: bool) -> None:
        """Hold the edge to sending all (``on``), or let its own rule decide again."""
        self.held = on
        if on:
            self.mode = Mode.SEND_ALL

    @property
    def error(self) -> float:
        """The current estimate of the model's error against ePIE (inf: none yet)."""
        return float(np.mean(self.errors)) if self.errors else float("inf")

    def model(self, version: int, error: float) -> bool:
        """A model update arrived; True if it is newer than the one in use (then it is)."""
        if version <= self.version:
            return False
        self.version = version
        self.errors.clear()  # a new model: judge it by its own validation error
        self.report(error)
        return True

    def report(self, error: float) -> str:
        """One more measured error of the model in use; the mode after it."""
        self.errors.append(float(error))
        while len(self.errors) > self.window:
            self.errors.popleft()
        if self.held:
            self.mode = Mode.SEND_ALL
        elif self.version > 0 and self.mode is Mode.SEND_ALL and self.error <= self.bound:
            self.mode = Mode.INFER
        elif self.mode is Mode.INFER and self.error > self.bound * self.hysteresis:
            self.mode = Mode.SEND_ALL
        return self.mode.value

    def state(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "version": self.version,
            "errors": list(self.errors),
            "held": self.held,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.mode = Mode(state["mode"])
        self.version = int(state["version"])
        self.errors = deque(float(e) for e in state["errors"])
        self.held = bool(state.get("held", False))


def sampled(frame: dict[str, Any], tiles_per_scan: int, every: int) -> bool:
    """Whether ``frame`` belongs to a tile sent on for fine-tuning: every ``every``-th tile,
    counted across scans (a scan of one tile would otherwise send every tile).

    >>> [sampled({"scan": s, "tile": 0}, 1, 2) for s in range(4)]
    [True, False, True, False]
    >>> [sampled({"scan": 0, "tile": t}, 4, 2) for t in range(4)]
    [True, False, True, False]
    """
    return (int(frame["scan"]) * tiles_per_scan + int(frame["tile"])) % every == 0


class EdgeInference(Actor):
    """At the edge: forwards frames, loads model versions, infers in batches once good enough.

    Inputs: detector frames (``ptycho.frames``), model updates
    (``ptycho.model``, from the :class:`~actors.ptycho.actors.Trainer`),
    quality reports (``ptycho.quality``) and the monitors' orders
    (``ptycho.control``, from :class:`~actors.ptycho._control.EdgeControl`).
    In ``send_all`` mode every frame goes on to ``uplink``; in ``infer`` mode
    every frame is inferred (in
    batches of ``batch_size``, or at the end of its tile) and published on
    ``images`` (one message per batch: ``scan``, ``tile``, ``indices``,
    ``positions``, ``version``, ``amplitude``, ``phase``, ``t_frame``,
    ``t_image``), and only the frames of every ``sample_every``-th tile go on
    to ``uplink`` (so the HPC site can still reconstruct them and fine-tune).
    Each change of mode, model or order is published on ``status`` (``mode``,
    ``version``, ``error``, ``reason``, ``thin``, ``held``, and the counts
    ``frames``, ``forwarded``, ``inferred``, ``thinned``). The model's version never
    goes backwards; the switch is :class:`Switch`.

    An order ``{"decimate": k}`` (the uplink is congested) thins the uplink
    at the source: sending all, the edge sends 1 frame in ``k`` and leaves
    the others out (``Actor.leave_out``: the HPC site makes marked
    stand-ins for them, :mod:`actors.ptycho.standin`, and reconstructs
    their tile from the frames that came); inferring, it samples 1 tile in
    ``sample_every · k``. ``{"hold": true}`` (the CNN's error drifted)
    sends all until an order without it.

    A change of mode takes effect at the next tile: the mode of a tile's
    first frame holds for the whole tile, so a tile is either sent up whole
    (its reconstruction has all its patterns) or inferred whole, never half
    of each (a partial tile the view would wait ``within`` seconds for).

    A model update is not loaded when it arrives but kept as the pending
    model (the newest one only: an older or equal version is dropped); the
    next frame or quality report loads it before it is handled. So a burst of
    versions (after an outage, or the first models all at once) costs one
    load, not one per version, and the frames behind them are not held up.
    """

    inputs = (FRAMES, MODELS, QUALITY, CONTROL)
    checkpoint_every = 64
    checkpoint_interval = 5.0

    def __init__(
        self,
        bound: float = 0.2,
        hysteresis: float = 1.25,
        window: int = 4,
        batch_size: int = 16,
        sample_every: int = 4,
        scan: dict[str, Any] | None = None,
        frames: str = FRAMES,
        models: str = MODELS,
        quality: str = QUALITY,
        uplink: str = UPLINK,
        images: str = IMAGES,
        status: str = STATUS,
        control: str = CONTROL,
        threads: int = 1,
    ) -> None:
        if batch_size < 1 or sample_every < 1:
            raise ValueError("EdgeInference: batch_size and sample_every must be >= 1")
        self.config = ScanConfig.of(scan)
        self.tiles_per_scan = max(1, self.config.grid**2 // self.config.tile_side**2)
        self.switch = Switch(bound, hysteresis, window)
        self.infer_batch, self.sample_every, self.threads = batch_size, sample_every, threads
        self.frames_subject, self.models_subject, self.quality_subject = frames, models, quality
        self.uplink, self.images, self.status, self.control = uplink, images, status, control
        self.thin = 1  #: send 1 frame in ``thin`` up (an order of the uplink's monitor)
        self.eligible = 0  #: frames the edge would have sent up, while sending all
        #: (scan, tile, inferred?) of the tile in progress: its mode, latched at its first frame
        self.latched: tuple[int, int, bool] | None = None
        self.model_blob: bytes | None = None
        self.model: Any = None
        #: the newest model update not loaded yet: (version, validation error, checkpoint)
        self.next_model: tuple[int, float, bytes] | None = None
        self.loads = 0  #: checkpoints loaded (one per version the edge ran)
        self.pending: list[dict[str, Any]] = []
        self.counts = {"frames": 0, "forwarded": 0, "inferred": 0, "thinned": 0}

    async def on_start(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        if self.model_blob is not None and self.model is None:
            self._load(self.model_blob)

    def _load(self, blob: bytes) -> int:
        from actors.ptycho.model import load_model

        self.model, version = load_model(blob)
        self.model_blob = blob
        self.loads += 1
        return version

    async def handle(self, msg: Message) -> None:
        if msg.subject == self.models_subject:
            await self._on_model(msg.data)
        elif msg.subject == self.control:
            await self._on_order(msg.data)
        elif msg.subject == self.quality_subject:
            await self._load_next()  # the report may be of the pending model
            before = self.switch.mode
            self.switch.report(float(msg.data["error"]))
            if self.switch.mode is not before:
                await self._flush()
                await self._status("drift" if before is Mode.INFER else "quality")
        else:
            await self._on_frame(msg)

    async def _on_order(self, data: dict[str, Any]) -> None:
        """An order of the monitors (:class:`~actors.ptycho._control.EdgeControl`)."""
        thin, hold = max(1, int(data.get("decimate", 1))), bool(data.get("hold", False))
        if (thin, hold) == (self.thin, self.switch.held):
            return
        self.thin, before = thin, self.switch.mode
        self.switch.hold(hold)
        if self.switch.mode is not before:
            await self._flush()
        await self._status(f"order: {data.get('by', 'monitor')}")

    async def _on_model(self, data: dict[str, Any]) -> None:
        """Keep the update as the pending model if it is the newest seen (not loaded yet)."""
        version = int(data["version"])
        newest = self.next_model[0] if self.next_model is not None else self.switch.version
        if version <= newest:
            return
        self.next_model = (version, float(data["val_error"]), bytes(data["checkpoint"]))

    async def _load_next(self) -> None:
        """Load the pending model (the newest update since the last frame) and switch to it."""
        if self.next_model is None:
            return
        version, error, blob = self.next_model
        loaded = await anyio.to_thread.run_sync(self._load, blob)
        self.next_model = None
        if loaded != version:
            raise ValueError(f"model update says version {version}, its checkpoint {loaded}")
        before = self.switch.mode
        self.switch.model(version, error)
        if self.switch.mode is not before:
            await self._flush()
        await self._status("model")

    async def _on_frame(self, msg: Message) -> None:
        data = msg.data
        await self._load_next()
        self.counts["frames"] += 1
        scan, tile = int(data["scan"]), int(data["tile"])
        if self.latched is None or self.latched[:2] != (scan, tile):  # a new tile
            self.latched = (scan, tile, self.switch.mode is Mode.INFER)
        infer = self.latched[2] and self.model is not None
        if infer:
            if sampled(data, self.tiles_per_scan, self.sample_every * self.thin):
                await self._forward(data)
        else:
            if self.eligible % self.thin:  # the uplink is congested: thinned at the source
                self.leave_out(self.uplink)
                self.counts["thinned"] += 1
            else:
                await self._forward(data)
            self.eligible += 1
        if not infer:
            return
        self.pending.append({**data, "t_recv": time.time()})
        k = self.config.tile_side**2
        if len(self.pending) >= self.infer_batch or int(data["index"]) % k == k - 1:
            await self._flush()

    async def _forward(self, data: dict[str, Any]) -> None:
        await self.emit(self.uplink, data)
        self.counts["forwarded"] += 1

    async def _flush(self) -> None:
        """Infer the pending frames (if a model is loaded) and publish their images."""
        if not self.pending or self.model is None:
            self.pending = []
            return
        from actors.ptycho.model import infer

        batch, self.pending = self.pending, []
        patterns = np.stack([np.asarray(f["pattern"]) for f in batch])
        amplitude, phase = await anyio.to_thread.run_sync(infer, self.model, patterns, len(batch))
        self.counts["inferred"] += len(batch)
        await self.emit(
            self.images,
            {
                "scan": [int(f["scan"]) for f in batch],
                "tile": [int(f["tile"]) for f in batch],
                "indices": [int(f["index"]) for f in batch],
                "positions": [list(f["pos"]) for f in batch],
                "version": self.switch.version,
                "amplitude": amplitude.astype(np.float16),
                "phase": phase.astype(np.float16),
                "t_frame": [float(f.get("t", 0.0)) for f in batch],
                "t_image": time.time(),
            },
        )

    async def _status(self, reason: str) -> None:
        await self.emit(
            self.status,
            {
                "mode": self.switch.mode.value,
                "version": self.switch.version,
                "error": self.switch.error,
                "reason": reason,
                "thin": self.thin,  # 1 frame in `thin` sent up (an order of the uplink's monitor)
                "held": self.switch.held,  # sending all by order, whatever the switch says
                **self.counts,
            },
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "switch": self.switch.state(),
            "model": self.model_blob,
            "next_model": None if self.next_model is None else list(self.next_model),
            "pending": self.pending,
            "counts": self.counts,
            "thin": [self.thin, self.eligible],
            "latched": None if self.latched is None else list(self.latched),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.switch.restore(state["switch"])
        self.model_blob = None if state["model"] is None else bytes(state["model"])
        self.model = None  # loaded in on_start
        nxt = state.get("next_model")
        self.next_model = None if nxt is None else (int(nxt[0]), float(nxt[1]), bytes(nxt[2]))
        self.pending = [dict(f) for f in state["pending"]]
        self.counts = {"thinned": 0, **state["counts"]}
        self.thin, self.eligible = (int(v) for v in state.get("thin", (1, 0)))
        latched = state.get("latched")
        if latched is not None:
            self.latched = (int(latched[0]), int(latched[1]), bool(latched[2]))
