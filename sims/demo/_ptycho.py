"""The ptychography workflow on its twin: what to watch, what to check, the report's numbers.

The subjects are those of ``supervisors/ptychography.toml``; the records'
fields those the actors of ``actors/ptycho/actors.py`` emit. :data:`PLAN`
watches them, :func:`digest` turns a run's records into the report's
numbers and checks, :func:`run_demo` is ``diaspora demo ptychography``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sims.demo._observe import Counter, LinkLag, Sample, Tail
from sims.demo._progress import make_progress
from sims.demo._report import write_report
from sims.demo._run import Plan, RunResult, run_on_twin
from sims.twinspec import load_schedule, load_twin

__all__ = ["PLAN", "SMALL", "DemoOptions", "digest", "run_demo"]

# The workflow's subjects (supervisors/ptychography.toml).
FRAMES: Final = "edge.frames"  # every pattern the detector produced (edge)
UPLINK: Final = "edge.uplink"  # the patterns sent up: all before the switch, a sample after
IMAGES: Final = "edge.images"  # the CNN's images at the edge
RECON: Final = "hpc.recon"  # ePIE per tile (hpc)
PAIRS: Final = "hpc.pairs"  # the view: K patterns of a tile with its reconstruction
TRAINED: Final = "hpc.trained"  # what the trainer trained on, one record per sample batch
MODEL: Final = "hpc.model"  # checkpoints, mirrored to the edge

#: ``--small``: arguments merged into the actors' (a small scan, few epochs).
SMALL: Final[dict[str, dict[str, Any]]] = {
    "root.edge.detector": {"grid": 8, "tile_side": 2, "scans": 4, "rate": 40.0},
    "root.hpc.trainer": {"epochs": 4, "batch": 16},
}

PLAN: Final = Plan(
    counters=(
        Counter("produced", "edge", FRAMES),
        Counter("sent_up", "edge", UPLINK),
        Counter("reconstructed_tiles", "hpc", RECON),
        Counter("paired_tiles", "hpc", PAIRS),
        Counter("trained_batches", "hpc", TRAINED),
        Counter("inferred", "edge", IMAGES),
        Counter("models_at_edge", "edge", MODEL),
    ),
    lags=(LinkLag("uplink", UPLINK, "edge", "hpc"), LinkLag("model_down", MODEL, "hpc", "edge")),
    tails=(
        Tail("hpc", RECON),
        Tail("hpc", TRAINED),
        Tail("edge", MODEL),
        Tail("edge", IMAGES),
        Tail("edge", UPLINK, headers_only=True),
    ),
    status=lambda sample, records: status(sample, records),
)


def _last(records: Sequence[Mapping[str, Any]], key: str) -> Any:
    for record in reversed(records):
        if key in record:
            return record[key]
    return None


def status(sample: Sample, records: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The live line: counts, the model version at the edge, the link lags, faults."""
    out: dict[str, Any] = {"t": sample.t}
    out.update(sample.counts)
    out["model_at_edge"] = _last(records.get(MODEL, []), "version")
    out.update({f"lag_{name}": lag for name, lag in sample.lags.items()})
    return out


@dataclass(frozen=True)
class DemoOptions:
    """What ``diaspora demo ptychography`` was asked for."""

    minutes: float = 3.0
    faults: Path | None = None
    out: Path = Path("demo-ptychography")
    small: bool = False
    plain: bool = False
    twin: Path = Path("sims/twins/ptychography.toml")
    workflow: Path = Path("supervisors/ptychography.toml")


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def digest(result: RunResult, *, cnn_factor: float = 3.0) -> dict[str, Any]:
    """The report's numbers and checks from one run's records."""
    t0 = result.started_at
    recon = result.records.get(RECON, [])
    images = result.records.get(IMAGES, [])
    models = result.records.get(MODEL, [])
    trained = result.records.get(TRAINED, [])
    uplink = result.records.get(UPLINK, [])
    quality = {
        "epie": [(r["_time"] - t0, float(r["error"])) for r in recon if "error" in r],
        "cnn": [(r["_time"] - t0, float(r["error"])) for r in images if "error" in r],
    }
    versions = [(m["_time"] - t0, int(m["version"])) for m in models if "version" in m]
    switch = next((r["_time"] - t0 for r in images if r.get("mode") == "edge"), None)
    epie_err = _median([e for _, e in quality["epie"]])
    late_cnn = [e for t, e in quality["cnn"] if switch is None or t >= switch]
    cnn_err = _median(late_cnn[len(late_cnn) // 2 :]) if late_cnn else None
    samples = [tuple(s) for r in trained for s in r.get("samples", [])]
    image_versions = [int(r["model_version"]) for r in images if "model_version" in r]
    last = result.samples[-1].counts if result.samples else {}
    summary: dict[str, Any] = dict(last)
    summary.update(
        {
            "epie_error_median": epie_err,
            "cnn_error_median_late": cnn_err,
            "epie_ssim_median": _median([float(r["ssim"]) for r in recon if "ssim" in r]),
            "cnn_ssim_median": _median([float(r["ssim"]) for r in images if "ssim" in r]),
            "epie_psnr_median": _median([float(r["psnr"]) for r in recon if "psnr" in r]),
            "cnn_psnr_median": _median([float(r["psnr"]) for r in images if "psnr" in r]),
            "model_versions_shipped": len(versions),
            "samples_trained_on": len(samples),
            "reconstructed_as_missing": sum(int(r.get("missing", 0)) for r in recon),
            "faults": len(result.faults),
        }
    )
    checks = {
        "switched_to_edge_inference": switch is not None,
        "model_reached_the_edge": bool(versions),
        "edge_model_never_goes_back": all(a <= b for a, b in itertools.pairwise(image_versions))
        and all(a[1] <= b[1] for a, b in itertools.pairwise(versions)),
        "no_duplicate_sample_trained_on": len(samples) == len(set(samples)),
        f"cnn_error_within_{cnn_factor:g}x_epie": epie_err is not None
        and cnn_err is not None
        and cnn_err <= cnn_factor * epie_err,
        "every_fault_applied": all(f.error is None for f in result.faults),
    }
    latency = _latencies(recon, images, uplink, switch, t0)
    return {
        "summary": summary,
        "quality": quality,
        "models": versions,
        "switch_s": switch,
        "checks": checks,
        "latency": latency,
    }


def _latencies(
    recon: Sequence[Mapping[str, Any]],
    images: Sequence[Mapping[str, Any]],
    uplink: Sequence[Mapping[str, Any]],
    switch: float | None,
    t0: float,
) -> dict[str, float | None]:
    """Pattern -> image: before the switch, detector emit -> ePIE tile stored at the HPC
    site; after it, detector emit -> CNN image stored at the edge (median seconds)."""
    before = [r["_time"] - r["emitted_at"] for r in recon if "emitted_at" in r]
    after = [
        r["_time"] - r["emitted_at"]
        for r in images
        if "emitted_at" in r and (switch is None or r["_time"] - t0 >= switch)
    ]
    return {
        "pattern_to_image_before_switch": _median(before),
        "pattern_to_image_after_switch": _median(after),
    }


async def run_demo(options: DemoOptions) -> dict[str, Any]:
    """Run the workflow on the twin for ``options.minutes``, write the report, return it."""
    twin = load_twin(options.twin)
    schedule = load_schedule(options.faults, twin) if options.faults is not None else None
    progress = make_progress(plain=options.plain)
    result = await run_on_twin(
        options.workflow,
        twin,
        PLAN,
        seconds=options.minutes * 60,
        schedule=schedule,
        overrides=SMALL if options.small else None,
        state_dir=None,  # a fresh twin each run: the report is what is kept
        progress=progress,
    )
    body = write_report(options.out, result, digest(result))
    progress.note(f"report: {options.out / 'report.md'}")
    return body


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value
