"""sims schedule: for any seed the random draw ends, and no two server faults that lift
themselves overlap (nor come closer than the gap a restart needs)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

from hypothesis import example, given, settings
from hypothesis import strategies as st

from diaspora.testing import FaultKind
from sims import build_schedule, load_scenario
from sims.scenario import RandomFaults, TimedFault
from sims.schedule import SERVER_GAP, draw_faults

ROOT = Path(__file__).resolve().parents[2]
RANDOM_FAULTS = load_scenario(ROOT / "sims" / "scenarios" / "random_faults.toml")
T = TypeVar("T")


def returns(call: Callable[[], T]) -> T:
    """``call()``, failing the test (rather than hanging it) when it never returns."""
    out: list[T] = []
    worker = threading.Thread(target=lambda: out.append(call()), daemon=True)
    worker.start()
    worker.join(30)
    assert out, "the schedule search did not return: it loops"
    return out[0]


def server_windows(schedule: list[TimedFault]) -> list[tuple[float, float]]:
    windows = []
    for timed in schedule:
        kind = timed.fault.kind
        if kind.layer != "server":
            continue
        length = 1.0 if kind is FaultKind.RESTART_SERVER else timed.fault.duration
        assert length is not None
        windows.append((timed.at, timed.at + length))
    return windows


def assert_apart(schedule: list[TimedFault]) -> None:
    for (_, end), (start, _) in pairwise(server_windows(schedule)):
        assert start >= round(end + SERVER_GAP, 2) - 1e-9, schedule


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6))
@example(seed=264)
@example(seed=410)
@example(seed=956)
def test_random_faults_schedule_ends_and_keeps_server_faults_apart(seed: int) -> None:
    schedule = returns(lambda: build_schedule(RANDOM_FAULTS, seed))
    assert len(schedule) == RANDOM_FAULTS.random.count  # type: ignore[union-attr]
    assert_apart(schedule)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    count=st.integers(1, 30),
    window=st.tuples(st.floats(0.0, 20.0), st.floats(0.01, 20.0)).map(
        lambda w: (round(w[0], 2), round(w[0] + w[1], 2))
    ),
)
def test_server_only_draws_end_and_never_overlap(
    seed: int, count: int, window: tuple[float, float]
) -> None:
    spec = RandomFaults(count, ("server",), window, (), ())
    drawn = returns(lambda: draw_faults(spec, seed=seed, traffic_s=30.0))
    assert len(drawn) == count
    assert_apart(sorted(drawn, key=lambda timed: timed.at))
