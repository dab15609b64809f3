"""The whole ptychography workflow on its twin (real servers per site, a shaped uplink, real
processes): the switch to edge inference, the model at the edge, the CNN against ePIE, and
under faults every pattern accounted for, no tile trained on twice, versions only forward."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from diaspora.cli import main as diaspora
from diaspora.workflow import TreeConfig, load_config
from sims.demo._progress import make_progress
from sims.demo._ptycho import DETECTOR, digest, drained, plan, small
from sims.demo._run import RunResult, run_on_twin
from sims.demo._tree import override_args, scan_of
from sims.twinspec import TwinFault, TwinFaultKind, load_twin

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(
        "ignore:.*treespec.*:FutureWarning", "ignore:.*val_dataloader.*", "ignore:.*workers.*"
    ),
]

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "supervisors" / "ptychography.toml"
TWIN = ROOT / "sims" / "twins" / "ptychography.toml"
#: The declared bound: the CNN's median error against the known object, over the second
#: half of its images at the edge, is at most this many times ePIE's (the small run: a
#: 32 x 32 instrument, 40 tiles of training; measured 3.2x).
CNN_FACTOR = 5.0


def _small(scans: int) -> tuple[TreeConfig, dict[str, Any], int]:
    overrides = small()
    overrides[DETECTOR]["scans"] = scans
    config = override_args(load_config(WORKFLOW), overrides)
    scan = scan_of(config, DETECTOR)
    return config, scan, scans * scan["grid"] ** 2


async def _run(scans: int, schedule: tuple[TwinFault, ...] = (), seconds: float = 240) -> Any:
    config, scan, total = _small(scans)
    result: RunResult = await run_on_twin(
        config,
        load_twin(TWIN),
        plan(frames=True, done=drained(scan, total)),
        seconds=seconds,
        schedule=schedule,
        progress=make_progress(io.StringIO()),  # not a terminal: quiet
    )
    return result, digest(result, scan, cnn_factor=CNN_FACTOR), total


def test_the_workflow_file_checks() -> None:
    assert diaspora(["check", str(WORKFLOW)]) == 0


def _assert_the_job_was_done(result: RunResult, report: dict[str, Any], total: int) -> None:
    checks = report["checks"]
    assert result.stopped_early, report["summary"]  # drained and switched before the timeout
    assert checks["switched_to_edge_inference"], report["summary"]
    assert checks["model_reached_the_edge"]
    assert report["summary"]["frames_inferred"] > 0  # the edge inferred after the switch
    assert checks[f"cnn_error_within_{CNN_FACTOR:g}x_epie"], report["summary"]
    assert report["accounting"]["produced"] == total
    assert checks["every_pattern_accounted_for"], report["accounting"]["unaccounted"]
    assert checks["no_tile_trained_on_twice"]
    assert checks["edge_model_never_goes_back"]


async def test_the_workflow_switches_to_edge_inference_and_the_cnn_nears_epie() -> None:
    result, report, total = await _run(scans=40)
    _assert_the_job_was_done(result, report, total)
    assert not result.faults


#: The issue's faults, early enough to hit a running pipeline on a loaded machine: the edge
#: uplink cut for several seconds, the trainer's process killed, the HPC server restarted.
FAULTS = (
    TwinFault(20.0, TwinFaultKind.CUT_LINK, site="edge", duration=4.0),
    TwinFault(30.0, TwinFaultKind.KILL_PROCESS, target="root.hpc.trainer"),
    TwinFault(38.0, TwinFaultKind.RESTART_SERVER, site="hpc"),
)


@pytest.mark.soak
async def test_the_workflow_does_its_job_through_a_cut_a_kill_and_a_server_restart() -> None:
    result, report, total = await _run(scans=40, schedule=FAULTS)
    _assert_the_job_was_done(result, report, total)
    assert [f.kind for f in result.faults] == ["cut_link", "kill_process", "restart_server"]
    assert report["checks"]["every_fault_applied"], [f.error for f in result.faults]
    assert result.faults[1].pid is not None  # the trainer's process, found and killed
    assert result.events.get("node_exited", 0) >= 1  # its supervisor saw it die...
    assert result.events.get("restarted", 0) >= 1  # ...and restarted it


@pytest.mark.soak
async def test_the_workflow_does_its_job_through_the_demo_faults_file() -> None:
    from sims.twinspec import load_schedule

    schedule = load_schedule(ROOT / "sims" / "twins" / "ptychography_faults.toml", load_twin(TWIN))
    result, report, total = await _run(scans=80, schedule=schedule, seconds=400)
    _assert_the_job_was_done(result, report, total)
    assert report["checks"]["every_fault_applied"]
