"""The whole ptychography workflow on its twin (real servers per site, a shaped uplink, real
processes): the switch to edge inference, the model at the edge, the CNN against ePIE, and
under faults every pattern accounted for, no tile trained on twice, versions only forward."""

from __future__ import annotations

import io
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")

from diaspora.cli import main as diaspora
from diaspora.errors import ConfigError
from diaspora.workflow import TreeConfig, load_config
from sims.demo._observe import Sample
from sims.demo._progress import make_progress
from sims.demo._ptycho import (
    DETECTOR,
    FRAMES,
    MONITORS,
    QUALITY,
    RECON,
    STATUS,
    digest,
    drained,
    plan,
    small,
    with_instrument,
)
from sims.demo._run import RunResult, run_on_twin
from sims.demo._tree import override_args, scan_of
from sims.twin import Twin
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


def _small(
    scans: int,
    rate: float | None = None,
    bound: float | None = None,
    instrument: dict[str, Any] | None = None,
) -> tuple[TreeConfig, dict[str, Any], int]:
    overrides = small(instrument)
    overrides[DETECTOR]["scans"] = scans
    if rate is not None:
        overrides[DETECTOR]["rate"] = rate
    if bound is not None:
        overrides["root.edge.infer"]["bound"] = bound
    config = override_args(load_config(WORKFLOW), overrides)
    scan = scan_of(config, DETECTOR)
    return config, scan, scans * scan["grid"] ** 2


async def _run(
    scans: int,
    schedule: tuple[TwinFault, ...] = (),
    seconds: float = 240,
    rate: float | None = None,
    after_switch: bool = False,
    never_switch: bool = False,
    until: Any = None,
    instrument: dict[str, Any] | None = None,
) -> Any:
    """A small run; the schedule counts from the switch (``after_switch``), from the first
    frame (``never_switch``: the edge sends all, its bound 0), else from the start. It ends
    once drained (and switched, unless ``never_switch``) and ``until`` (records) holds."""
    config, scan, total = _small(scans, rate, 0.0 if never_switch else None, instrument)
    drain = drained(scan, total, switched=not never_switch)
    killed_at: list[float] = []  # when a sample first saw the trainer's kill applied

    async def watch(sample: Sample, twin: Twin) -> None:
        if not killed_at and any(f.kind == "kill_process" and f.at_s for f in twin.log):
            killed_at.append(time.time())

    def done(sample: Sample, records: dict[str, list[dict[str, Any]]]) -> bool:
        # drained, switched, and a trainer killed has come back: it trained after the kill
        back = not killed_at or any(q["_time"] > killed_at[0] for q in records.get(QUALITY, ()))
        return back and (until is None or until(records)) and bool(drain(sample, records))

    def switched(sample: Sample, records: dict[str, list[dict[str, Any]]]) -> bool:
        if never_switch:
            return bool(sample.counts.get("produced"))
        return not after_switch or any(r.get("mode") == "infer" for r in records.get(STATUS, ()))

    result: RunResult = await run_on_twin(
        config,
        load_twin(TWIN),
        replace(plan(frames=True, done=done), faults_from=switched),
        seconds=seconds,
        schedule=schedule,
        progress=make_progress(io.StringIO()),  # not a terminal: quiet
        on_sample=watch,
    )
    return result, digest(result, scan, cnn_factor=CNN_FACTOR), total


def test_the_workflow_file_checks() -> None:
    assert diaspora(["check", str(WORKFLOW)]) == 0


def test_small_gives_the_uplinks_stand_in_maker_the_small_instrument() -> None:
    """The stand-ins of ``--small`` place a missing frame on the small instrument's scan (one
    tile a scan), not the file's (four): else a stand-in names a tile that does not exist."""
    config = override_args(load_config(WORKFLOW), small())
    qos = config.streams["ptycho.diff"].qos
    assert qos is not None
    assert qos.reconstructor_args["scan"] == scan_of(config, DETECTOR)
    assert scan_of(config, DETECTOR)["grid"] == 4
    with pytest.raises(ConfigError, match=r"no actor or reconstructed stream ptycho\.frames"):
        override_args(load_config(WORKFLOW), {"ptycho.frames": {"scan": {}}})


def test_change_at_reaches_every_actor_that_simulates_the_instrument_and_the_stand_ins() -> None:
    """``--change-at``: the detector, the edge, the trainer, ePIE's workers and the uplink's
    stand-in maker all see the same changed sample (else the truth would disagree)."""
    base = load_config(WORKFLOW)
    for overrides in ({}, small()):
        config = override_args(base, with_instrument(base, overrides, change_at=7))
        scans = [scan_of(config, name) for name in (DETECTOR, "root.edge.infer", "root.recon")]
        qos = config.streams["ptycho.diff"].qos
        assert qos is not None
        assert {s["change_at"] for s in [*scans, qos.reconstructor_args["scan"]]} == {7}
        assert len({tuple(sorted(s.items())) for s in scans}) == 1  # one instrument


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


#: The issue's faults, timed from when the edge has switched to inference (the detector
#: starts last, once the HPC site is up; the switch comes 10-30 s later): the HPC server
#: restarted 1 s after, the trainer's process killed at 3 s, the edge uplink cut for 4 s at
#: 6 s while the edge infers and sends its sample up. The kill comes after the restart: a
#: trainer restarting while its server restarts fails its start and backs off, which doubles
#: its ~30 s return on a loaded 2-core machine (the soak runs below keep the issue's order).
#: The run ends once drained, switched, and the trainer, back from its checkpoint, has
#: trained again.
FAULTS_CI = (
    TwinFault(1.0, TwinFaultKind.RESTART_SERVER, site="hpc"),
    TwinFault(3.0, TwinFaultKind.KILL_PROCESS, target="root.hpc.trainer"),
    TwinFault(6.0, TwinFaultKind.CUT_LINK, site="edge", duration=4.0),
)
FAULTS_FILE = ROOT / "sims" / "twins" / "ptychography_faults.toml"
#: The default run: 56 scans of one 16-pattern tile at 24 frames/s (37 s of acquisition).
SCANS, RATE = 56, 24.0


def _assert_the_faults_were_survived(result: RunResult, report: dict[str, Any]) -> None:
    kinds = sorted(f.kind for f in result.faults)
    assert {"cut_link", "kill_process", "restart_server"} <= set(kinds), kinds
    assert report["checks"]["every_fault_applied"], [f.error for f in result.faults]
    (kill,) = [f for f in result.faults if f.kind == "kill_process"]
    assert kill.pid is not None  # the trainer's process, found and killed
    assert result.events.get("node_exited", 0) >= 1  # its supervisor saw it die...
    assert result.events.get("restarted", 0) >= 1  # ...and restarted it
    assert report["summary"]["trained_tiles"] > 0


async def test_the_workflow_does_its_job_through_a_cut_a_kill_and_a_server_restart() -> None:
    """The issue's CI run: one short run under the scripted faults that also checks the job:
    the switch, the model at the edge, the CNN against ePIE, every pattern accounted for, no
    tile trained on twice, the edge's model version never going back."""
    result, report, total = await _run(
        scans=SCANS, schedule=FAULTS_CI, rate=RATE, after_switch=True
    )
    _assert_the_job_was_done(result, report, total)
    _assert_the_faults_were_survived(result, report)


#: Congestion: the uplink capped at 30 kB/s both ways for 15 s, from 1 s after the first
#: frame; the edge sending all needs ~55 kB/s (measured at the twin's link proxy), thinned to
#: 1 in 2 ~28 kB/s. Measured at 25 kB/s: the delay warned 6.6 s in, the order reached the
#: edge at once, 121 of 768 patterns were left out (marked stand-ins), resolved 1.7 s after.
CONGESTION = (TwinFault(1.0, TwinFaultKind.BANDWIDTH, site="edge", rate=30e3, duration=15.0),)
#: 60 scans of 16 at 24 frames/s: 40 s of acquisition, the congestion well inside it.
CONGESTED_SCANS = 60


def _orders(
    records: dict[str, list[dict[str, Any]]], monitor: str, kind: str
) -> list[dict[str, Any]]:
    """The edge's status records saying it took an order made on ``monitor``'s ``kind``."""
    reason = f"order: monitor {monitor} {kind}"
    return [r for r in records.get(STATUS, ()) if r.get("reason") == reason]


async def test_a_congested_uplink_is_thinned_at_the_edge_while_it_lasts() -> None:
    """The uplink capped below what the edge sends: the uplink_delay monitor (BridgeLag's
    delay, read at the HPC site) warns while the cap lasts, root.hpc.edge_control's order
    reaches the edge while the detector still produces, the edge leaves patterns out at the
    source (each a marked stand-in at the HPC site, its tile reconstructed without it), and
    the resolve after the cap lifts the order. Every pattern is accounted for."""
    result, report, total = await _run(
        scans=CONGESTED_SCANS,
        schedule=CONGESTION,
        rate=RATE,
        never_switch=True,
        until=lambda records: bool(_orders(records, "uplink_delay", "resolved")),
    )
    assert result.stopped_early, report["summary"]
    assert report["checks"]["every_fault_applied"], [f.error for f in result.faults]
    (cap,) = result.faults
    assert cap.at_s is not None
    assert cap.lifted_s is not None
    records = result.records
    warnings = [
        m
        for m in records[MONITORS]
        if m.get("name") == "uplink_delay" and m.get("kind") == "warning"
    ]
    assert warnings, [m.get("name") for m in records[MONITORS]]
    # not before the cap (the twin's clock starts after started_at: a lower bound)
    assert warnings[0]["_time"] - result.started_at >= cap.at_s
    (thin, *_) = _orders(records, "uplink_delay", "warning")
    (lift, *_) = _orders(records, "uplink_delay", "resolved")
    assert (thin["thin"], lift["thin"]) == (2, 1)  # 1 frame in 2, then all again
    assert thin["_time"] < lift["_time"]
    last_frame = max(r["_time"] for r in records[FRAMES])
    assert thin["_time"] < last_frame  # in time to matter: the detector was still producing
    account = report["accounting"]
    assert account["produced"] == total
    assert account["marked_stand_ins"] > 0, account  # left out at the edge, marked at the hpc
    assert account["marked_stand_ins"] == account["reconstructed_as_missing"]
    assert report["checks"]["every_pattern_accounted_for"], account["unaccounted"]
    assert report["checks"]["no_tile_trained_on_twice"]
    assert not report["checks"]["switched_to_edge_inference"]  # bound 0: it sent all


#: The sample changes at scan 40 of 60 (12 frames/s, one tile a scan: 53 s in), well after
#: the switch: the CNN's error against ePIE ~0.15 before, ~0.4 after (measured).
DRIFT_AT, DRIFT_SCANS, DRIFT_RATE = 40, 60, 12.0


@pytest.mark.soak
async def test_a_changed_sample_holds_the_edge_to_sending_all_until_the_drift_resolves() -> None:
    """The edge infers; the sample changes; the edge_drift monitor warns on the CNN's error,
    root.hpc.edge_control holds the edge to sending all (every tile reconstructed and
    trained on, not 1 in 2), the warning resolves (relearnt level) and the edge infers
    again. Every pattern is accounted for, no tile trained twice, versions only forward."""

    result, report, total = await _run(
        scans=DRIFT_SCANS,
        rate=DRIFT_RATE,
        instrument={"change_at": DRIFT_AT},
        until=lambda records: bool(_orders(records, "edge_drift", "resolved")),
        seconds=400,
    )
    records = result.records
    status = records[STATUS]
    assert result.stopped_early, report["summary"]
    per_scan = 16  # one tile of 16 a scan
    changed = min(
        r["_time"]
        for r in records[FRAMES]
        if int(r["_headers"]["Diaspora-Item"]) > DRIFT_AT * per_scan
    )
    assert any(r["mode"] == "infer" and r["_time"] < changed for r in status)  # switched first
    drift = [m for m in records[MONITORS] if m.get("name") == "edge_drift"]
    warning = next(m for m in drift if m.get("kind") == "warning")
    assert warning["_time"] > changed  # the change, not the learning curve, set it off
    (hold, *_) = _orders(records, "edge_drift", "warning")
    (release, *_) = _orders(records, "edge_drift", "resolved")
    assert (hold["mode"], hold["held"], release["held"]) == ("send_all", True, False)
    assert hold["_time"] < release["_time"]
    assert any(r["mode"] == "infer" and r["_time"] >= release["_time"] for r in status)
    # held, the edge sent every tile up: consecutive changed scans reconstructed (inferring,
    # it sends 1 tile in sample_every = 2)
    rebuilt = sorted({int(r["scan"]) for r in records[RECON] if int(r["scan"]) >= DRIFT_AT})
    assert any(s + 1 in rebuilt and s + 2 in rebuilt for s in rebuilt), rebuilt
    assert report["accounting"]["produced"] == total
    assert report["checks"]["every_pattern_accounted_for"], report["accounting"]["unaccounted"]
    assert report["checks"]["no_tile_trained_on_twice"]
    assert report["checks"]["edge_model_never_goes_back"]


@pytest.mark.soak
async def test_the_workflow_switches_to_edge_inference_and_the_cnn_nears_epie() -> None:
    result, report, total = await _run(scans=40)
    _assert_the_job_was_done(result, report, total)
    assert not result.faults


#: Later faults, on a longer run: the pipeline is in full flow when they hit.
FAULTS = (
    TwinFault(20.0, TwinFaultKind.CUT_LINK, site="edge", duration=4.0),
    TwinFault(30.0, TwinFaultKind.KILL_PROCESS, target="root.hpc.trainer"),
    TwinFault(38.0, TwinFaultKind.RESTART_SERVER, site="hpc"),
)


@pytest.mark.soak
async def test_the_workflow_does_its_job_through_late_faults() -> None:
    result, report, total = await _run(scans=60, schedule=FAULTS)
    _assert_the_job_was_done(result, report, total)
    _assert_the_faults_were_survived(result, report)


@pytest.mark.soak
async def test_the_workflow_does_its_job_through_the_demo_faults_file_longer() -> None:
    from sims.twinspec import load_schedule

    schedule = load_schedule(FAULTS_FILE, load_twin(TWIN))
    result, report, total = await _run(scans=80, schedule=schedule, seconds=400)
    _assert_the_job_was_done(result, report, total)
    assert report["checks"]["every_fault_applied"]
