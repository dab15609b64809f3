"""ScaleOutGroup's sizing rule, on measured (time, head, position) samples."""

from __future__ import annotations

from collections import deque

import pytest

from diaspora.compute._scaleout import ScaleOutGroup
from tests.streams.qos_actors import KeyedCounter


def group(partitions: int, replicas: int) -> ScaleOutGroup:
    made = ScaleOutGroup(KeyedCounter, None, id="g", partitions=partitions)  # type: ignore[arg-type]
    made.replicas = replicas
    return made


def samples(*points: tuple[float, int, int]) -> deque[tuple[float, int, int]]:
    return deque(points)


@pytest.mark.parametrize(
    ("partitions", "replicas", "arrived", "drained", "expected"),
    [
        (8, 1, 200, 50, 8),  # 4x short: 5 replicas would run 2 partitions each, like 4
        (8, 1, 200, 100, 3),  # 2x short, plus a quarter: 2.5; 3 replicas do 8/3 = 2.67
        (8, 2, 200, 190, 4),  # barely short: still at least double
        (4, 1, 1000, 10, 4),  # far short: capped at max_replicas
        (12, 3, 300, 100, 12),  # parallelism 3 * 3 * 1.25 = 11.25 -> 12 (6 would give 6)
    ],
)
def test_replicas_cover_the_measured_shortfall_with_a_margin(
    partitions: int, replicas: int, arrived: int, drained: int, expected: int
) -> None:
    g = group(partitions, replicas)
    measured = samples((0.0, 1000, 900), (1.0, 1000 + arrived, 900 + drained))
    assert g._needed(measured, max_replicas=partitions) == expected


def test_a_backlog_with_no_arrivals_is_sized_to_drain_soon() -> None:
    """A restart on 8,900 items, draining 100/s: more than double, to drain it in seconds."""
    g = group(8, 1)
    assert g._needed(samples((0.0, 10_000, 1000), (1.0, 10_000, 1100)), max_replicas=8) == 8
    assert g._needed(samples((0.0, 10_000, 9000), (1.0, 10_000, 9300)), max_replicas=8) == 2


def test_no_drain_measured_waits_then_doubles() -> None:
    g = group(8, 2)
    assert g._needed(samples((0.0, 100, 50), (1.0, 300, 50)), max_replicas=8) is None
    assert g._needed(samples((0.0, 100, 50), (3.0, 700, 50)), max_replicas=8) == 4
