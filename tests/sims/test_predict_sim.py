"""The prediction scenarios: a consumer whose capacity shrinks and a link that degrades; the
monitor warns and acts first (at the consumer, or at the edge before the link)."""

from __future__ import annotations

import pytest

from sims.predict import run_ramp, run_seeds

pytestmark = pytest.mark.anyio


async def test_the_monitor_switches_the_shrinking_consumer_before_its_bound_does() -> None:
    result = await run_ramp(1, mode="act")
    assert result.warned_at is not None
    assert result.violated_at is None or result.warned_at < result.violated_at
    assert result.first_switch == "forced by monitor backlog"  # not "lag ... > 100 items"
    assert result.skipped > 0  # decimated while warned


async def test_on_a_degrading_link_the_monitor_decimates_at_the_edge_before_the_link() -> None:
    result = await run_ramp(2, mode="act", link=True)
    assert result.warned_at is not None
    assert result.violated_at is None or result.warned_at < result.violated_at
    assert result.first_switch == "forced by monitor backlog"  # the edge relay, not a bound
    assert result.skipped > 0  # the relay dropped items before the link


@pytest.mark.soak
async def test_over_seeds_the_warnings_lead_and_acting_cuts_the_violation() -> None:
    _, summary = await run_seeds(5)
    print(summary.table())
    assert summary.recall == 1.0  # every violation was warned of before it came
    assert summary.precision is not None  # reported: near misses (a peak just under) count false
    assert summary.violation_act_s is not None
    assert summary.violation_act_s < summary.violation_watch_s
    assert summary.max_lag_act is not None
    assert summary.max_lag_act < summary.max_lag_watch


@pytest.mark.soak
async def test_over_seeds_a_degrading_link_is_warned_of_before_the_bound() -> None:
    results, summary = await run_seeds(5, link=True)
    print(summary.table())
    assert summary.recall == 1.0
    healthy = sum(r.violation_s for r in results if not r.ramp)  # under load: a near miss
    assert healthy < summary.violation_watch_s  # the degrading link is what violates
    assert summary.violation_act_s is not None
    assert summary.violation_act_s < summary.violation_watch_s  # decimating at the edge helps
    assert all(r.first_switch == "forced by monitor backlog" for r in results if r.mode == "act")
