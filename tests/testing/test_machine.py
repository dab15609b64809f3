"""WorkflowMachine: its final check passes a correct workflow under faults and catches
one that loses or duplicates outputs; every run leaves a JSON report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from diaspora.testing import FaultRig
from diaspora.testing.machine import WorkflowMachine
from diaspora.testing.strategies import actor_faults, link_faults, server_faults
from diaspora.workflow import parse_config
from tests.testing.trees import ECHO_IN_PROCESS, LOSSY, STUTTER


def identity(key: str, values: list[Any]) -> list[Any]:
    return [{"key": key, "i": i, "value": v} for i, v in enumerate(values)]


class Passthrough(WorkflowMachine):
    """The model of Echo, Lossy and Stutter: each input comes out unchanged."""

    def model(self, key: str, values: list[Any]) -> list[Any]:
        return identity(key, values)


def run(machine: type[WorkflowMachine], examples: int) -> None:
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=5,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        ),
    )


def test_a_correct_workflow_passes_under_actor_server_and_link_faults(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    with FaultRig(parse_config(ECHO_IN_PROCESS), report_path=report) as rig:
        attributes = {
            "rig": rig,
            "input_subject": "echo.in",
            "output_subject": "echo.out",
            "burst": 5,
            "actor_faults": actor_faults(["root.echo"], hang_seconds=[0.1]),
            "server_faults": server_faults(down=(0.05, 0.2)),
            "link_faults": link_faults(duration=(0.05, 0.2)),
            "idle_seconds": [0.01],
            "settle_timeout": 30.0,
        }
        echoing = type("Echoing", (Passthrough,), attributes)
        run(echoing, examples=8)
        sweep = echoing.sweep(rig)
    written = json.loads(report.read_text())
    assert written["examples"] >= 8
    assert written["ok"] is True
    assert written["lost"] == written["duplicated"] == 0
    assert written["outputs_checked"] == written["messages_sent"] > 0
    assert written["faults_total"] > 0
    assert written["extra"]["sweep"] == sweep
    assert sweep["lost"] == sweep["duplicated"] == sweep["wrong_keys"] == 0
    assert written["extra"]["orphans"] == []


@pytest.mark.parametrize(
    ("tree", "subject", "found"),
    [(LOSSY, "lossy", r"[1-9]\d* lost"), (STUTTER, "stutter", r"[1-9]\d* duplicated")],
    ids=["lossy", "stutter"],
)
def test_the_final_check_catches_lost_and_duplicated_outputs(
    tree: str, subject: str, found: str, tmp_path: Path
) -> None:
    report = tmp_path / "report.json"
    with FaultRig(parse_config(tree), link=False, report_path=report) as rig:
        attributes = {
            "rig": rig,
            "input_subject": f"{subject}.in",
            "output_subject": f"{subject}.out",
            "key_count": 1,
            "burst": 5,
            "settle_timeout": 1.0,
        }
        with pytest.raises(AssertionError, match=found):
            run(type("Broken", (Passthrough,), attributes), examples=20)
    written = json.loads(report.read_text())
    assert written["ok"] is False
    assert written["failed_examples"] >= 1
