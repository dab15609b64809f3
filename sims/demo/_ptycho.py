"""The ptychography workflow on its twin: what to watch, what to check, the report's numbers.

The subjects are those of ``supervisors/ptychography.toml`` (the defaults of
``actors/ptycho/actors.py``). :data:`PLAN` watches them, :func:`digest` turns
a run's records into the report's numbers and checks (quality against the
known object is computed here, from the simulator's seed, for ePIE's tiles
and the CNN's images alike), :func:`run_demo` is ``diaspora demo
ptychography``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from diaspora.fabric.headers import ITEM
from diaspora.workflow import TreeConfig, load_config
from sims.demo._observe import Counter, LinkLag, Sample, Tail
from sims.demo._progress import make_progress
from sims.demo._report import write_report
from sims.demo._run import Plan, RunResult, run_on_twin
from sims.demo._tree import args_of, override_args, scan_of
from sims.twinspec import load_schedule, load_twin

__all__ = [
    "DETECTOR",
    "PLAN",
    "DemoOptions",
    "digest",
    "plan",
    "run_demo",
    "small",
    "with_instrument",
]

# The workflow's subjects.
FRAMES: Final = "ptycho.frames"  # every pattern the detector produced (edge)
UPLINK: Final = "ptycho.diff"  # the patterns sent up: all before the switch, a sample after
IMAGES: Final = "ptycho.edge_images"  # the CNN's images at the edge, a batch a message
STATUS: Final = "ptycho.edge_status"  # the edge's mode and model version, at each change
RECON: Final = "ptycho.recon"  # ePIE per tile (hpc)
QUALITY: Final = "ptycho.quality"  # per tile trained on: the CNN against ePIE and the truth
MODEL: Final = "ptycho.model"  # checkpoints, mirrored to the edge
MONITORS: Final = "diaspora.events.monitor.>"  # the monitors' warnings, resolves, actions
#: The actor whose ``scan`` argument describes the instrument.
DETECTOR: Final = "root.edge.detector"
#: The declared bound of the report's check: the CNN's median error against the known
#: object, over the second half of its images at the edge, at most this many times ePIE's.
CNN_FACTOR: Final = 5.0
#: The actors that take the instrument's ``scan``.
_SCANNED: Final = ("root.edge.detector", "root.edge.infer", "root.hpc.trainer", "root.recon")


def small(scan: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``--small``: a 32 x 32 instrument, scans of one tile of 16 positions (the views' K),
    a small CNN, 20 ePIE iterations (arguments merged into the actors', and the uplink's
    stand-in maker's)."""
    instrument = {
        "n": 32, "grid": 4, "tile_side": 4, "step": 3, "pupil_radius": 5.0, "defocus": 3.0,
        "feature": 1.5, "seed": 1, **(scan or {}),
    }  # fmt: skip
    out: dict[str, dict[str, Any]] = {name: {"scan": instrument} for name in _SCANNED}
    out[UPLINK] = {"scan": instrument}  # the uplink's stand-ins (MissingFrame) place frames by it
    out[DETECTOR].update({"scans": 40, "rate": 12.0})  # 640 frames over 53 s
    out["root.hpc.trainer"].update(
        {
            "model": {"nconv": 4, "depth": 2},
            "steps_per_tile": 6,
            "batch_size": 16,
            "publish_every": 3,
        }
    )
    out["root.edge.infer"].update({"bound": 0.45, "sample_every": 2})
    out["root.recon"].update({"n_iter": 20})
    return out


def with_instrument(
    config: TreeConfig, overrides: dict[str, dict[str, Any]], **fields: Any
) -> dict[str, dict[str, Any]]:
    """``overrides`` with ``fields`` merged into the instrument (``scan``) of every actor that
    takes it and of the uplink's stand-in maker, on top of the file's or ``overrides``' own
    (``--change-at``: the same sample change for the detector, the edge, the trainer, ePIE's
    workers and the stand-ins).

    >>> from diaspora.workflow import load_config
    >>> from sims.demo import ROOT
    >>> config = load_config(ROOT / "supervisors" / "ptychography.toml")
    >>> out = with_instrument(config, small(), change_at=30)
    >>> {name: out[name]["scan"]["change_at"] for name in (DETECTOR, UPLINK)}
    {'root.edge.detector': 30, 'ptycho.diff': 30}
    """
    out = {name: dict(args) for name, args in overrides.items()}
    for name in _SCANNED:
        entry = out.setdefault(name, {})
        entry["scan"] = {**(entry.get("scan") or scan_of(config, name)), **fields}
    decl = config.streams.get(UPLINK)
    if decl is not None and decl.qos is not None and "scan" in decl.qos.reconstructor_args:
        entry = out.setdefault(UPLINK, {})
        base = entry.get("scan") or decl.qos.reconstructor_args["scan"]
        entry["scan"] = {**base, **fields}
    return out


def plan(*, frames: bool = False, done: Any = None) -> Plan:
    """What to watch; ``frames`` also tails the detector's frames (headers only: item
    numbers and stored times, for the accounting and the latencies)."""
    tails = [
        Tail("hpc", RECON),
        Tail("hpc", QUALITY),
        Tail("edge", MODEL),
        Tail("edge", STATUS),
        Tail("edge", IMAGES),
        Tail("hpc", MONITORS, window=None),
    ]
    if frames:
        tails.append(Tail("edge", FRAMES, headers_only=True))
    return Plan(
        counters=(
            Counter("produced", "edge", FRAMES),
            Counter("sent_up", "edge", UPLINK),
            Counter("reconstructed_tiles", "hpc", RECON),
            Counter("trained_tiles", "hpc", QUALITY),
            Counter("models_made", "hpc", MODEL),
            Counter("image_batches", "edge", IMAGES),
        ),
        lags=(
            LinkLag("uplink", UPLINK, "edge", "hpc"),
            LinkLag("models_down", MODEL, "hpc", "edge"),
        ),
        tails=tuple(tails),
        status=lambda sample, records: status(sample, records),
        done=done,
    )


PLAN: Final = plan()


def status(sample: Sample, records: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The live line: counts, frames inferred, the edge's model and mode, lags, faults."""
    out: dict[str, Any] = {"t": sample.t}
    out.update(sample.counts)
    out["inferred"] = sum(len(r.get("indices", ())) for r in records.get(IMAGES, ()))
    edge = records.get(STATUS, [])
    out["model_at_edge"] = edge[-1].get("version") if edge else None
    out["mode"] = edge[-1].get("mode") if edge else "send_all"
    out.update({f"lag_{name}": lag for name, lag in sample.lags.items()})
    return out


@dataclass(frozen=True)
class DemoOptions:
    """What ``diaspora demo ptychography`` was asked for."""

    minutes: float = 3.0
    faults: Path | None = None
    out: Path = Path("demo-ptychography")
    small: bool = False
    #: the sample changes from this scan on (``ScanConfig.change_at``: a drift for the CNN)
    change_at: int | None = None
    plain: bool = False
    twin: Path = Path("sims/twins/ptychography.toml")
    workflow: Path = Path("supervisors/ptychography.toml")


def _median(values: Sequence[float]) -> float | None:
    values = [v for v in values if math.isfinite(v)]
    return statistics.median(values) if values else None


class _Truth:
    """The known object, and the quality of an estimate of one patch against it."""

    def __init__(self, scan: Mapping[str, Any]) -> None:
        from actors.ptycho.model import footprint
        from actors.ptycho.simulate import ScanConfig, Simulator

        self.sim = Simulator(ScanConfig.of(dict(scan)))
        self.weight = footprint(self.sim.probe)
        self._objects: dict[int, Any] = {}

    def patch(self, scan: int, pos: Sequence[int]) -> Any:
        if scan not in self._objects:
            self._objects[scan] = self.sim.obj(scan)
        return self.sim.patch(self._objects[scan], (int(pos[0]), int(pos[1])))

    def quality(self, estimate: Any, scan: int, pos: Sequence[int]) -> tuple[float, float, float]:
        """(registered error, SSIM, PSNR) of ``estimate`` (a complex patch) under the probe;
        SSIM and PSNR compare phases after registration."""
        import numpy as np

        from actors.ptycho.metrics import psnr, register, registered_error, ssim

        truth = self.patch(scan, pos)
        w = self.weight
        error = registered_error(estimate, truth, w)
        fitted = register(estimate, truth, w)
        a, b = np.angle(fitted) * w, np.angle(truth) * w
        return error, ssim(a, b), psnr(a, b)


def _epie_points(truth: _Truth, recon: Sequence[Mapping[str, Any]], t0: float) -> list[Any]:
    """(t, error, ssim, psnr) of ePIE on each tile's first frame's patch."""
    import numpy as np

    n = truth.sim.config.n
    out = []
    for r in recon:
        if "object" not in r or not len(r.get("positions", ())):
            continue
        obj = np.asarray(r["object"])
        oy, ox = (int(v) for v in r["origin"])
        y, x = (int(v) for v in np.asarray(r["positions"])[0])
        patch = obj[y - oy : y - oy + n, x - ox : x - ox + n]
        if patch.shape != (n, n):
            continue
        out.append((r["_time"] - t0, *truth.quality(patch, int(r["scan"]), (y, x))))
    return out


def _cnn_points(truth: _Truth, images: Sequence[Mapping[str, Any]], t0: float) -> list[Any]:
    """(t, error, ssim, psnr) of the CNN at the edge on each batch's first frame."""
    import numpy as np

    out = []
    for r in images:
        if not r.get("indices"):
            continue
        estimate = np.asarray(r["amplitude"][0], dtype=np.float64) * np.exp(
            1j * np.asarray(r["phase"][0], dtype=np.float64)
        )
        point = truth.quality(estimate, int(r["scan"][0]), r["positions"][0])
        out.append((r["_time"] - t0, *point))
    return out


def digest(
    result: RunResult, scan: Mapping[str, Any], *, cnn_factor: float = 3.0
) -> dict[str, Any]:
    """The report's numbers and checks from one run's records (``scan``: the instrument)."""
    t0 = result.started_at
    truth = _Truth(scan)
    rec = result.records
    recon, images = rec.get(RECON, []), rec.get(IMAGES, [])
    quality, status_ = rec.get(QUALITY, []), rec.get(STATUS, [])
    models = rec.get(MODEL, [])
    epie = _epie_points(truth, recon, t0)
    cnn = _cnn_points(truth, images, t0)
    switch = next((r["_time"] - t0 for r in status_ if r.get("mode") == "infer"), None)
    versions = [(m["_time"] - t0, int(m["version"])) for m in models if "version" in m]
    edge_versions = [int(r["version"]) for r in status_ if "version" in r]
    image_versions = [int(r["version"]) for r in images if "version" in r]
    trained = [(int(q["scan"]), int(q["tile"])) for q in quality]
    late = [e for t, e, *_ in cnn if switch is None or t >= switch]
    epie_err = _median([e for _, e, *_ in epie])
    cnn_err = _median(late[len(late) // 2 :])  # the model's last half at the edge
    last = result.samples[-1].counts if result.samples else {}
    summary: dict[str, Any] = dict(last)
    summary.update(
        {
            "frames_inferred": sum(len(r.get("indices", ())) for r in images),
            "epie_error_median": epie_err,
            "cnn_error_median_late": cnn_err,
            "epie_ssim_median": _median([p[2] for p in epie]),
            "cnn_ssim_median_late": _median(
                [p[2] for p in cnn if switch is None or p[0] >= switch]
            ),
            "epie_psnr_median_db": _median([p[3] for p in epie]),
            "cnn_psnr_median_late_db": _median(
                [p[3] for p in cnn if switch is None or p[0] >= switch]
            ),
            "cnn_vs_epie_at_hpc_last": quality[-1]["error"] if quality else None,
            "model_versions_at_edge": len(versions),
            "last_model_at_edge": versions[-1][1] if versions else None,
            "patterns_reconstructed_as_missing": sum(int(r.get("missing", 0)) for r in recon),
            "epie_seconds_per_tile_median": _median(
                [float(r.get("seconds", "nan")) for r in recon]
            ),
            "faults": len(result.faults),
        }
    )
    checks = {
        "switched_to_edge_inference": switch is not None,
        "model_reached_the_edge": bool(versions),
        "edge_model_never_goes_back": all(a <= b for a, b in itertools.pairwise(edge_versions))
        and all(a <= b for a, b in itertools.pairwise(image_versions)),
        "no_tile_trained_on_twice": len(trained) == len(set(trained)),
        f"cnn_error_within_{cnn_factor:g}x_epie": epie_err is not None
        and cnn_err is not None
        and cnn_err <= cnn_factor * epie_err,
        "every_fault_applied": all(f.error is None for f in result.faults),
    }
    out: dict[str, Any] = {
        "summary": summary,
        "quality": {
            "ePIE (HPC)": [(t, e) for t, e, *_ in epie],
            "CNN at the edge": [(t, e) for t, e, *_ in cnn],
            "CNN before training on a tile (HPC)": [
                (q["_time"] - t0, float(q["truth_error"])) for q in quality if "truth_error" in q
            ],
        },
        "models": versions,
        "switch_s": switch,
        "monitors": monitor_events(rec.get(MONITORS, []), t0),
        "checks": checks,
        "latency": {},
    }
    frames = rec.get(FRAMES)
    if frames is not None:
        account = accounting(rec, truth.sim, t0, switch)
        out["accounting"] = account
        out["checks"]["every_pattern_accounted_for"] = not account["unaccounted"]
        out["latency"] = account.pop("latency")
        summary["patterns_unaccounted"] = len(account["unaccounted"])
    return out


def monitor_events(records: Sequence[Mapping[str, Any]], t0: float) -> list[dict[str, Any]]:
    """The monitors' events (category monitor), oldest first: when, which monitor, what
    (``warning``, ``resolved``, ``action``), the key, the value, and an action's outcome."""
    out = []
    for r in records:
        event = {
            "t": round(float(r["_time"]) - t0, 3),
            "monitor": r.get("name"),
            "kind": r.get("kind"),
        }
        for field in ("key", "value", "predicted", "action", "phase", "ok", "detail"):
            if r.get(field) is not None:
                event[field] = r[field]
        out.append(event)
    return out


def accounting(
    records: Mapping[str, Sequence[Mapping[str, Any]]], sim: Any, t0: float, switch: float | None
) -> dict[str, Any]:
    """Every pattern the detector produced, and what became of it: inferred at the edge,
    reconstructed (its tile's ePIE used it), or reconstructed-as-missing (its tile was
    reconstructed without it and says so; ``marked_stand_ins`` of those had a stand-in
    marked reconstructed: left out of a congested uplink, or lost). Also the pattern ->
    image latencies."""
    per_scan, k = sim.frames_per_scan, sim.k
    stored: dict[tuple[int, int], float] = {}
    for r in records.get(FRAMES, []):
        n = int(r["_headers"][ITEM]) - 1
        stored[(n // per_scan, n % per_scan)] = r["_time"]
    inferred: dict[tuple[int, int], float] = {}
    for r in records.get(IMAGES, []):
        for scan, index in zip(r["scan"], r["indices"], strict=True):
            inferred.setdefault((int(scan), int(index)), r["_time"])
    used: dict[tuple[int, int], float] = {}
    missing: set[tuple[int, int]] = set()
    standins: set[tuple[int, int]] = set()
    for r in records.get(RECON, []):
        scan, tile = int(r["scan"]), int(r["tile"])
        done = {int(i) for i in r["indices"]}
        standins.update((scan, int(i)) for i in r.get("standins", ()))
        for index in sim.tile_indices(tile):
            key = (scan, int(index))
            if int(index) in done:
                used.setdefault(key, r["_time"])
            else:
                missing.add(key)
    unaccounted = sorted(set(stored) - set(inferred) - set(used) - missing)
    before = [
        used[f] - stored[f]
        for f in used
        if f in stored and (switch is None or used[f] - t0 < switch)
    ]
    after = [inferred[f] - stored[f] for f in inferred if f in stored]
    return {
        "produced": len(stored),
        "inferred": len(inferred),
        "reconstructed": len(used),
        "reconstructed_as_missing": len(missing),
        "marked_stand_ins": len(standins),
        "unaccounted": [list(f) for f in unaccounted],
        "k": k,
        "latency": {
            "pattern_to_image_before_switch_median": _median(before),
            "pattern_to_image_after_switch_median": _median(after),
        },
    }


def drained(scan: Mapping[str, Any], total: int, *, switched: bool = True) -> Any:
    """A plan's ``done``: the detector's ``total`` frames are all produced and accounted for
    (and, with ``switched``, the edge has switched to inference)."""
    from actors.ptycho.simulate import ScanConfig, Simulator

    sim = Simulator(ScanConfig.of(dict(scan)))

    def done(sample: Sample, records: Mapping[str, list[dict[str, Any]]]) -> bool:
        if len(records.get(FRAMES, ())) < total:
            return False
        if switched and not any(r.get("mode") == "infer" for r in records.get(STATUS, ())):
            return False
        return not accounting(records, sim, 0.0, None)["unaccounted"]

    return done


async def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Acquire for ``options.minutes`` (the detector's scans sized to it), then let the
    workflow drain (at most as long again, at least a minute), write the report, return it."""
    twin = load_twin(options.twin)
    schedule = load_schedule(options.faults, twin) if options.faults is not None else None
    config: TreeConfig = load_config(options.workflow)
    overrides = small() if options.small else {}
    if options.change_at is not None:
        overrides = with_instrument(config, overrides, change_at=options.change_at)
    detector = {**args_of(config, DETECTOR), **overrides.get(DETECTOR, {})}
    scan = {**scan_of(config, DETECTOR), **overrides.get(DETECTOR, {}).get("scan", {})}
    from actors.ptycho.simulate import ScanConfig, Simulator

    per_scan = Simulator(ScanConfig.of(scan)).frames_per_scan
    acquire = options.minutes * 60
    scans = max(1, math.ceil(acquire * float(detector.get("rate", 100.0)) / per_scan))
    overrides.setdefault(DETECTOR, {})["scans"] = scans
    config = override_args(config, overrides)
    progress = make_progress(plain=options.plain)
    result = await run_on_twin(
        config,
        twin,
        plan(frames=True, done=drained(scan, scans * per_scan, switched=False)),
        seconds=acquire + max(60.0, acquire),
        schedule=schedule,
        progress=progress,
    )
    body = write_report(options.out, result, digest(result, scan, cnn_factor=CNN_FACTOR))
    progress.note(f"report: {options.out / 'report.md'}")
    return body
