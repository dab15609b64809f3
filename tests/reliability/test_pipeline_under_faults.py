"""The project's reliability suite: the three-stage pipeline of ``actors/pipeline.py``
(``supervisors/reliability.toml``: producer in-process, transform and sink in process
nodes, every connection of the tree through a LinkProxy) driven by a hypothesis state
machine that interleaves keyed traffic with server kills, pauses and restarts, process
kills and freezes, actor crashes and hangs, and link faults (latency, bandwidth, reset,
blackhole, cut). Every example ends with the pipeline's outputs compared with the model
(``actors.pipeline.expected``): each input's effect exactly once, in per-key order; no
supervisor gave up; no child left dead. A final sweep re-reads every output of the run
for duplicates that arrived after their example's check.

The server, the link and the running tree are shared by all examples (each example has
keys of its own, and heals and waits for the tree before its check), so that the default
100 examples take about three minutes. ``--soak`` runs ``$DIASPORA_SOAK_EXAMPLES`` (3000)
more, with longer fault sequences. Every run writes its report to
``tests/reliability/report.json`` (or ``$DIASPORA_RELIABILITY_REPORT``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from actors.pipeline import REQUESTS, RESULTS, expected
from diaspora.testing import FaultKind, FaultSpec
from diaspora.testing._rig import FaultRig
from diaspora.testing.machine import WorkflowMachine
from diaspora.testing.strategies import actor_faults, link_faults, process_faults, server_faults

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "supervisors" / "reliability.toml"
REPORT = Path(
    os.environ.get("DIASPORA_RELIABILITY_REPORT", ROOT / "tests" / "reliability" / "report.json")
)
ACTORS = ["root.producer", "root.transform", "root.sink"]
PROCESSES = ["root.transform", "root.sink"]
EXAMPLES = int(os.environ.get("DIASPORA_RELIABILITY_EXAMPLES", "100"))
SOAK_EXAMPLES = int(os.environ.get("DIASPORA_SOAK_EXAMPLES", "3000"))


class PipelineUnderFaults(WorkflowMachine):
    input_subject = REQUESTS
    output_subject = RESULTS
    key_count = 3
    burst = 15
    actor_faults = actor_faults(ACTORS, hang_seconds=(None, 0.2))
    process_faults = process_faults(PROCESSES, freeze=(0.2, 2.5))
    server_faults = server_faults(down=(0.1, 1.0))
    link_faults = link_faults(duration=(0.1, 1.0))
    idle_seconds = (0.05, 0.2, 0.5)
    settle_timeout = 45.0

    def model(self, key: str, values: list[Any]) -> list[Any]:
        return expected(key, values)

    def closing_values(self, key: str) -> list[Any]:
        return [None]  # close every key: the transform's state for it must go


def run(rig: FaultRig, examples: int, steps: int) -> None:
    machine = type("Pipeline", (PipelineUnderFaults,), {"rig": rig})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
            print_blob=True,
        ),
    )


@pytest.fixture(scope="module")
def rig() -> Iterator[FaultRig]:
    with FaultRig(CONFIG, report_path=REPORT) as running:
        yield running
    assert running.orphans == [], f"processes outlived the pipeline: {running.orphans}"


def check_report(rig: FaultRig) -> None:
    sweep = PipelineUnderFaults.sweep(rig)
    report = rig.report
    assert (sweep["lost"], sweep["duplicated"], sweep["wrong_keys"]) == (0, 0, 0), sweep
    assert (report.lost, report.duplicated) == (0, 0), report.as_dict()
    assert report.ok, report.problems[:5]


#: One example through every kind of fault, whatever hypothesis draws in the others.
TOUR = [
    FaultSpec(FaultKind.CRASH, "root.producer"),
    FaultSpec(FaultKind.HANG, "root.transform"),  # past its 1 s deadline: a crash
    FaultSpec(FaultKind.HANG, "root.sink", seconds=0.2),  # only slow
    FaultSpec(FaultKind.KILL_PROCESS, "root.transform"),
    FaultSpec(FaultKind.FREEZE, "root.sink", seconds=2.5),  # past the 2 s heartbeat timeout
    FaultSpec(FaultKind.KILL_SERVER, duration=0.5),
    FaultSpec(FaultKind.KILL_PROCESS, "root.sink"),
    FaultSpec(FaultKind.RESTART_SERVER),
    FaultSpec(FaultKind.PAUSE_SERVER),  # until resumed, after one more burst
    FaultSpec(FaultKind.RESUME_SERVER),
    FaultSpec(FaultKind.LATENCY, seconds=0.05, jitter=0.01, duration=1.0),
    FaultSpec(FaultKind.BANDWIDTH, rate=50_000, duration=1.0),
    FaultSpec(FaultKind.RESET_LINK),
    FaultSpec(FaultKind.BLACKHOLE, duration=0.5),
    FaultSpec(FaultKind.CUT_LINK, duration=0.5),
    FaultSpec(FaultKind.FREEZE, "root.transform", seconds=0.3),
    FaultSpec(FaultKind.HEAL_LINK),
]


def test_every_kind_of_fault_in_one_example(rig: FaultRig) -> None:
    machine = type("Pipeline", (PipelineUnderFaults,), {"rig": rig})()
    machine.begin()
    for n, fault in enumerate(TOUR):
        machine.send(machine.keys[n % len(machine.keys)], [n, -2 * n, 3])
        machine.inject(fault)
    machine.teardown()  # the same final check as every hypothesis example
    assert set(rig.report.faults) == {kind.value for kind in FaultKind}


def test_pipeline_outputs_equal_the_model_under_interleaved_faults(rig: FaultRig) -> None:
    run(rig, EXAMPLES, steps=6)
    check_report(rig)
    assert rig.report.examples >= EXAMPLES


@pytest.mark.soak
def test_soak_pipeline_under_faults(rig: FaultRig) -> None:
    run(rig, SOAK_EXAMPLES, steps=12)
    check_report(rig)
