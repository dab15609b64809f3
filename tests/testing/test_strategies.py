"""Fault strategies: only the targets and kinds asked for, in the ranges asked for."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diaspora.testing import FaultKind, FaultSpec, FaultStep
from diaspora.testing.strategies import (
    actor_faults,
    fault_schedules,
    fault_specs,
    link_faults,
    process_faults,
    server_faults,
)

ACTORS = ["root.a", "root.b"]
PROCESSES = ["root.b"]
FAST = settings(max_examples=50, deadline=None, database=None)


@FAST
@given(fault_specs(actors=ACTORS, processes=PROCESSES))
def test_specs_hit_only_the_targets_given_and_serialize(fault: FaultSpec) -> None:
    layer = fault.kind.layer
    if layer == "actor":
        assert fault.target in ACTORS
    elif layer == "process":
        assert fault.target in PROCESSES
    else:
        assert fault.target is None
    assert json.loads(json.dumps(fault.as_dict()))["kind"] == fault.kind.value
    assert fault.describe().startswith(fault.kind.value)


@FAST
@given(link_faults(duration=(0.5, 0.7), kinds={FaultKind.BLACKHOLE, FaultKind.CUT_LINK}))
def test_link_faults_keep_to_the_kinds_and_durations_asked_for(fault: FaultSpec) -> None:
    assert fault.kind in (FaultKind.BLACKHOLE, FaultKind.CUT_LINK)
    assert fault.duration is not None
    assert 0.5 <= fault.duration <= 0.7


@FAST
@given(server_faults(down=(0.1, 0.2), restart=False, pause=False))
def test_server_faults_without_restart_or_pause_are_timed_kills(fault: FaultSpec) -> None:
    assert fault.kind is FaultKind.KILL_SERVER
    assert fault.duration is not None
    assert 0.1 <= fault.duration <= 0.2


@FAST
@given(process_faults(PROCESSES, freeze=None) | actor_faults(ACTORS, hang_seconds=[None]))
def test_narrowed_process_and_actor_faults(fault: FaultSpec) -> None:
    assert fault.kind in (FaultKind.KILL_PROCESS, FaultKind.CRASH, FaultKind.HANG)
    assert fault.seconds is None


@FAST
@given(fault_schedules(fault_specs(server=True, link=False), max_size=4, max_delay=0.5))
def test_schedules_are_bounded_lists_of_delayed_faults(schedule: list[FaultStep]) -> None:
    assert len(schedule) <= 4
    assert all(0 <= step.delay <= 0.5 for step in schedule)
    assert all(step.fault.kind.layer == "server" for step in schedule)


@pytest.mark.parametrize(
    "make",
    [
        lambda: actor_faults([]),
        lambda: process_faults([]),
        lambda: fault_specs(server=False, link=False),
        lambda: link_faults(kinds={FaultKind.CRASH}),
    ],
)
def test_asking_for_nothing_to_break_is_an_error(make: object) -> None:
    with pytest.raises(ValueError, match=r"nothing to break|at least one|is a link fault"):
        make()  # type: ignore[operator]


def test_strategies_are_hypothesis_strategies() -> None:
    assert isinstance(fault_specs(actors=ACTORS), st.SearchStrategy)
