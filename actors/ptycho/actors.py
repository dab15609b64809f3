"""The ptychography actors: Detector, Reconstructor, Trainer and EdgeInference.

Thin actors over :mod:`~actors.ptycho.simulate`, :mod:`~actors.ptycho.epie`
and :mod:`~actors.ptycho.model`; every one takes the instrument as ``scan``
(the fields of :class:`~actors.ptycho.simulate.ScanConfig`, the same table
for all of them) and every subject as an argument with the default below.

- :class:`Detector` (a source, at the edge) emits each exposure on
  ``ptycho.frames`` at ``rate`` frames/s: ``{"scan", "tile", "index", "pos":
  [y, x], "t", "pattern": float32 (n, n)}``, item number = 1 + frame number.
- :class:`Reconstructor` (at the HPC site) takes items of a view grouping the
  K patterns of a tile (source ``diff``, key ``(scan, tile)``) and emits
  ePIE's object of the tile on ``ptycho.recon``: ``{"scan", "tile",
  "indices", "standins", "positions", "origin", "object": complex64 (h, w),
  "patterns", "missing", "truth_error", "seconds"}``
  (:func:`reconstruction_payload`). A partial item (fewer than K patterns)
  is reconstructed from what it has; stand-ins for patterns that never came
  (:mod:`actors.ptycho.standin`) are listed under ``standins``, not used; a
  tile of stand-ins only has ``"object": None``.
- :class:`Trainer` (stateful, checkpoint = the model's weights and Adam's
  state) takes items of a view pairing a tile's K patterns (``diff``) with its
  reconstruction (``recon``); before training on a tile it measures the
  current model on it against ePIE and the known object (``ptycho.quality``:
  ``{"version", "scan", "tile", "error", "truth_error", "epie_truth_error",
  "samples_seen"}``), then trains ``steps_per_tile`` steps and publishes the
  new version on ``ptycho.model``: ``{"version", "val_error", "loss",
  "samples_seen", "checkpoint": bytes, "object"}`` (also kept in the object
  store ``store`` as ``v<version:08d>``). A tile seen before is skipped.
- :class:`EdgeInference` (at the edge, in :mod:`actors.ptycho._edge`): see its
  docstring and :class:`Switch`.
- :class:`BridgeLag` (at the HPC site, in :mod:`actors.ptycho._lag`): the
  uplink's lag once a second on ``ptycho.uplink_lag``, for the monitor.
- :class:`EdgeControl` (at the HPC site, in :mod:`actors.ptycho._control`):
  the monitors' alerts as orders for the edge, on ``ptycho.control``.

>>> from actors.ptycho.actors import Detector, EdgeInference, Reconstructor, Trainer
>>> Detector.outputs, Reconstructor.inputs, Trainer.inputs, EdgeInference.inputs
(('ptycho.frames',), ('views.ptycho_tiles',), ('views.ptycho_train',), \
('ptycho.frames', 'ptycho.model', 'ptycho.quality', 'ptycho.control'))

Public API (stable): the five actors, :class:`Mode`, :class:`Switch`,
:func:`reconstruction_payload`, :func:`tile_targets`, the two views the
actors expect (:func:`tiles_view`, :func:`train_view`) and the subject
constants.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import anyio
import numpy as np

from actors.ptycho._control import CONTROL, EdgeControl
from actors.ptycho._edge import (
    FRAMES,
    IMAGES,
    MODELS,
    QUALITY,
    STATUS,
    UPLINK,
    EdgeInference,
    Mode,
    Switch,
)
from actors.ptycho._lag import LAG, BridgeLag
from actors.ptycho.epie import reconstruct, registered_error
from actors.ptycho.simulate import ScanConfig, Simulator
from actors.ptycho.standin import is_standin
from diaspora import Actor, Message
from diaspora.views import Source, View, ViewItem

__all__ = [
    "CONTROL",
    "FRAMES",
    "IMAGES",
    "LAG",
    "MODELS",
    "QUALITY",
    "RECON",
    "STATUS",
    "TILES_VIEW",
    "TRAIN_VIEW",
    "UPLINK",
    "BridgeLag",
    "Detector",
    "EdgeControl",
    "EdgeInference",
    "Mode",
    "Reconstructor",
    "Switch",
    "Trainer",
    "reconstruction_payload",
    "tile_targets",
    "tiles_view",
    "train_view",
]

RECON = "ptycho.recon"
TILES_VIEW = "views.ptycho_tiles"
TRAIN_VIEW = "views.ptycho_train"


def tiles_view(k: int, *, within: float = 600.0, **options: Any) -> View:
    """The view the :class:`Reconstructor` reads: the K patterns of each (scan, tile).

    >>> tiles_view(16).sources["diff"].count, tiles_view(16).output
    (16, 'views.ptycho_tiles')
    """
    return View(
        "ptycho_tiles",
        output=TILES_VIEW,
        key=("scan", "tile"),
        within=within,
        sources={"diff": Source(UPLINK, count=k)},
        **options,
    )


def train_view(k: int, *, within: float = 600.0, **options: Any) -> View:
    """The view the :class:`Trainer` reads: a tile's K patterns with its reconstruction."""
    return View(
        "ptycho_train",
        output=TRAIN_VIEW,
        key=("scan", "tile"),
        within=within,
        sources={"diff": Source(UPLINK, count=k), "recon": Source(RECON, count=1)},
        **options,
    )


class Detector(Actor):
    """Emits the simulated exposures of ``scans`` scans at ``rate`` frames/s (0: flat out)."""

    outputs = (FRAMES,)
    checkpoint_every = 64
    checkpoint_interval = 2.0

    def __init__(
        self,
        scan: dict[str, Any] | None = None,
        scans: int = 1,
        first_scan: int = 0,
        rate: float = 100.0,
        to: str = FRAMES,
    ) -> None:
        if scans < 1 or rate < 0:
            raise ValueError(f"Detector: scans ({scans}) must be >= 1 and rate ({rate}) >= 0")
        self.sim = Simulator(ScanConfig.of(scan))
        self.scans, self.first_scan, self.rate, self.to = scans, first_scan, rate, to
        self.next = 0  #: frames emitted so far

    async def produce(self) -> None:
        per_scan = self.sim.frames_per_scan
        start, first = time.monotonic(), self.next
        tile_key, tile = (-1, -1), None
        while self.next < self.scans * per_scan and not self.stopping:
            n = self.next
            scan, index = self.first_scan + n // per_scan, n % per_scan
            key = (scan, index // self.sim.k)
            if key != tile_key:
                tile_key, tile = key, self.sim.tile(*key)
            assert tile is not None
            if self.rate > 0:
                delay = start + (n - first) / self.rate - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
            i = index % self.sim.k
            y, x = (int(v) for v in tile.positions[i])
            data = {
                "scan": scan,
                "tile": key[1],
                "index": index,
                "pos": [y, x],
                "t": time.time(),
                "pattern": tile.patterns[i],
            }
            await self.emit(self.to, data, item=n + 1)
            self.next = n + 1

    def snapshot(self) -> dict[str, int]:
        return {"next": self.next}

    def restore(self, state: dict[str, int]) -> None:
        self.next = int(state["next"])


def _data(loaded: Message | ViewItem) -> dict[str, Any]:
    """The payload of a view item's member (a message; a nested view item is a mistake).

    A message some other reconstructor made (not a stand-in of
    :mod:`actors.ptycho.standin`) is marked a stand-in too: whatever its
    pattern, it was not measured, so ePIE and the trainer leave it out.

    >>> from diaspora import Message
    >>> made = Message({"pattern": [[1.0]], "index": 3}, "ptycho.diff", 9, reconstructed=True)
    >>> _data(made)["standin"], is_standin(_data(made))
    (True, True)
    >>> is_standin(_data(Message({"pattern": [[1.0]]}, "ptycho.diff", 8)))
    False
    """
    if isinstance(loaded, ViewItem):
        raise TypeError(f"expected messages in the view item, got an item of view {loaded.view!r}")
    data: dict[str, Any] = loaded.data
    if loaded.reconstructed and not is_standin(data):
        # made by another reconstructor than the stand-ins': not a measured pattern either
        data = {**data, "standin": True}
    return data


def reconstruction_payload(
    frames: list[dict[str, Any]], sim: Simulator, *, n_iter: int = 50, score: bool = True
) -> dict[str, Any]:
    """ePIE on one tile's frames (detector payloads): the ``ptycho.recon`` message.

    Stand-ins among ``frames`` (:func:`~actors.ptycho.standin.is_standin`) are
    listed, not used; a tile of stand-ins only gets no object (``None``).
    """
    if not frames:
        raise ValueError("reconstruction_payload: no frames")
    scan, tile = int(frames[0]["scan"]), int(frames[0]["tile"])
    real = [f for f in frames if not is_standin(f)]
    out: dict[str, Any] = {
        "scan": scan,
        "tile": tile,
        "indices": [int(f["index"]) for f in real],
        "standins": [int(f["index"]) for f in frames if is_standin(f)],
        "patterns": len(frames),  # the view item's members (what the training view counts)
        "missing": sim.k - len(real),
        "t": time.time(),
    }
    if not real:
        out.update(positions=[], origin=None, object=None, truth_error=float("nan"), seconds=0.0)
        return out
    patterns = np.stack([np.asarray(f["pattern"]) for f in real])
    positions = np.array([f["pos"] for f in real], dtype=np.int64)
    began = time.perf_counter()
    rec = reconstruct(scan, tile, patterns, positions, sim.probe, sim.scale, n_iter=n_iter)
    seconds = time.perf_counter() - began
    truth = float("nan")
    if score:
        truth = registered_error(rec.obj, sim.obj(scan)[rec.region], rec.mask())
    out.update(
        positions=positions,
        origin=list(rec.origin),
        object=rec.obj.astype(np.complex64),
        truth_error=truth,
        seconds=seconds,
        t=time.time(),
    )
    return out


class Reconstructor(Actor):
    """ePIE per tile at the HPC site, from items of the tiles view (K patterns each)."""

    inputs = (TILES_VIEW,)
    outputs = (RECON,)
    checkpoint_every = 1
    max_in_flight = 64
    batch_size = 8

    def __init__(
        self,
        scan: dict[str, Any] | None = None,
        n_iter: int = 50,
        score: bool = True,
        source: str = "diff",
        to: str = RECON,
    ) -> None:
        self.sim = Simulator(ScanConfig.of(scan))
        self.n_iter, self.score, self.source, self.to = n_iter, score, source, to

    async def handle(self, msg: Message) -> None:
        sample = await ViewItem.of(msg).load(self.fabric)
        frames = [_data(m) for m in sample[self.source]]
        payload = await anyio.to_thread.run_sync(
            lambda: reconstruction_payload(frames, self.sim, n_iter=self.n_iter, score=self.score)
        )
        await self.emit(self.to, payload)


def tile_targets(
    frames: list[dict[str, Any]], recon: dict[str, Any], n: int
) -> tuple[Any, Any, Any]:
    """(patterns, absolute positions, ePIE patches) of a tile: the patch under each frame."""
    obj = np.asarray(recon["object"])
    oy, ox = (int(v) for v in recon["origin"])
    patterns = np.stack([np.asarray(f["pattern"]) for f in frames])
    positions = np.array([f["pos"] for f in frames], dtype=np.int64)
    patches = []
    for y, x in positions:
        ry, rx = int(y) - oy, int(x) - ox
        if ry < 0 or rx < 0 or ry + n > obj.shape[0] or rx + n > obj.shape[1]:
            raise ValueError(
                f"scan {recon['scan']} tile {recon['tile']}: frame at {(int(y), int(x))} is "
                f"outside the reconstruction (origin {(oy, ox)}, shape {obj.shape})"
            )
        patches.append(obj[ry : ry + n, rx : rx + n])
    return patterns, positions, np.stack(patches)


class Trainer(Actor):
    """Trains the CNN online from items of the training view; publishes model versions."""

    inputs = (TRAIN_VIEW,)
    outputs = (MODELS, QUALITY)
    checkpoint_every = 4
    checkpoint_interval = 10.0
    max_in_flight = 32
    batch_size = 4

    def __init__(
        self,
        scan: dict[str, Any] | None = None,
        model: dict[str, Any] | None = None,
        steps_per_tile: int = 4,
        batch_size: int = 32,
        buffer: int = 512,
        publish_every: int = 1,
        window: int = 4,
        seed: int = 0,
        threads: int = 1,
        store: str | None = "ptycho-models",
        diff: str = "diff",
        recon: str = "recon",
        models: str = MODELS,
        quality: str = QUALITY,
    ) -> None:
        from actors.ptycho.model import ModelConfig, OnlineTrainer

        self.sim = Simulator(ScanConfig.of(scan))
        config = ModelConfig(**{"n": self.sim.config.n, **(model or {})})
        self.trainer = OnlineTrainer(
            config, probe=self.sim.probe, buffer=buffer, batch_size=batch_size, seed=seed
        )
        self.steps_per_tile, self.publish_every = steps_per_tile, publish_every
        self.errors: deque[float] = deque(maxlen=window)
        self.threads, self.store = threads, store
        self.diff, self.recon, self.models, self.quality = diff, recon, models, quality
        self.tiles = 0  #: tiles trained on
        self.seen: set[str] = set()  #: "scan:tile" of every tile trained on
        self.duplicates = 0

    async def on_start(self) -> None:
        import torch

        torch.set_num_threads(self.threads)

    async def handle(self, msg: Message) -> None:
        from actors.ptycho.model import targets

        item = ViewItem.of(msg)
        sample = await item.load(self.fabric)
        recon = _data(sample[self.recon][0])
        frames = [f for f in map(_data, sample[self.diff]) if not is_standin(f)]
        name = f"{int(recon['scan'])}:{int(recon['tile'])}"
        if name in self.seen:
            self.duplicates += 1
            self.log.warning("duplicate_tile", tile=name, version=item.version)
            return
        if recon.get("object") is None or not frames:  # nothing measured to learn from
            self.log.info("tile_without_patterns", tile=name, standins=recon.get("standins"))
            return
        patterns, positions, patches = tile_targets(frames, recon, self.sim.config.n)
        weight = self.trainer.weight
        amplitude, phase = targets(patches, weight)
        truth = np.stack([self.sim.patch(self.sim.obj(int(recon["scan"])), p) for p in positions])
        truth_amplitude, truth_phase = targets(truth, weight)

        def learn() -> tuple[float, float, float]:
            error = self.trainer.evaluate(patterns, amplitude, phase)
            truth_error = self.trainer.evaluate(patterns, truth_amplitude, truth_phase)
            self.trainer.add(patterns, amplitude, phase)
            loss = self.trainer.train(self.steps_per_tile)
            return error, truth_error, loss

        version = self.trainer.version
        error, truth_error, loss = await anyio.to_thread.run_sync(learn)
        self.seen.add(name)
        self.tiles += 1
        self.errors.append(error)
        await self.emit(
            self.quality,
            {
                "version": version,
                "scan": int(recon["scan"]),
                "tile": int(recon["tile"]),
                "error": error,
                "truth_error": truth_error,
                "epie_truth_error": float(recon.get("truth_error", float("nan"))),
                "samples_seen": self.trainer.samples_seen,
            },
        )
        if self.tiles % self.publish_every == 0:
            await self._publish(loss)

    async def _publish(self, loss: float) -> None:
        blob = self.trainer.model_bytes()
        version = self.trainer.version
        ref = None
        if self.store:
            obs = await self.fabric.ensure_object_store(self.store)
            name = f"v{version:08d}"
            await obs.put(name, blob)
            ref = f"{self.store}/{name}"
        await self.emit(
            self.models,
            {
                "version": version,
                "val_error": float(np.mean(self.errors)),
                "loss": loss,
                "samples_seen": self.trainer.samples_seen,
                "tiles": self.tiles,
                "checkpoint": blob,
                "object": ref,
                "t": time.time(),
            },
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "trainer": self.trainer.save(),
            "errors": list(self.errors),
            "tiles": self.tiles,
            "seen": sorted(self.seen),
            "duplicates": self.duplicates,
        }

    def restore(self, state: dict[str, Any]) -> None:
        from actors.ptycho.model import OnlineTrainer

        self.trainer = OnlineTrainer.load(bytes(state["trainer"]))
        self.errors = deque((float(e) for e in state["errors"]), maxlen=self.errors.maxlen)
        self.tiles = int(state["tiles"])
        self.seen = set(state["seen"])
        self.duplicates = int(state["duplicates"])
