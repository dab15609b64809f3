"""RateMeter, LagMeter and LatencyMeter driven by a fake clock."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaspora.streams._meter import LagMeter, LatencyMeter, RateMeter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- RateMeter -----------------------------------------------------------------------------


def test_rate_converges_to_a_steady_rate() -> None:
    clock = FakeClock()
    meter = RateMeter(window=5.0, now=clock)
    for _ in range(60):
        for _ in range(8):  # binary fractions of a second: no rounding at tick edges
            meter.mark(5)
            clock.advance(0.125)
    assert meter.rate == pytest.approx(40.0, rel=1e-9)
    assert meter.total == 2400
    assert meter.mean_rate == pytest.approx(40.0)


def test_rate_before_the_first_tick_is_the_mean_so_far() -> None:
    clock = FakeClock()
    meter = RateMeter(now=clock)
    assert meter.rate == 0.0
    meter.mark(3)
    clock.advance(0.5)
    assert meter.rate == pytest.approx(6.0)


def test_rate_follows_a_step_with_the_window_as_time_constant() -> None:
    clock = FakeClock()
    meter = RateMeter(window=10.0, tick=1.0, now=clock)
    for _ in range(100):
        meter.mark(100)
        clock.advance(1.0)
    for _ in range(10):  # the rate drops to 0: after one window, ~1/e of it is left
        clock.advance(1.0)
    assert meter.rate == pytest.approx(100 * math.exp(-1.0), rel=1e-9)


def test_idle_time_decays_the_rate_without_per_tick_work() -> None:
    clock = FakeClock()
    meter = RateMeter(window=1.0, tick=0.1, now=clock)
    meter.mark(10)
    clock.advance(0.1)
    assert meter.rate == pytest.approx(100.0)
    clock.advance(10**6)  # ten million idle ticks, one multiplication
    assert meter.rate == 0.0
    meter.mark()
    assert meter.total == 11


def test_rate_meter_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window=0 must be a number > 0"):
        RateMeter(window=0)
    with pytest.raises(ValueError, match="must not exceed window"):
        RateMeter(window=1, tick=2)
    with pytest.raises(ValueError, match="n=-1"):
        RateMeter().mark(-1)


# -- LagMeter ------------------------------------------------------------------------------


def test_lag_growing_when_the_consumer_is_slower() -> None:
    clock = FakeClock()
    meter = LagMeter(window=5.0, now=clock)
    for second in range(30):
        meter.update(head=100 * second, position=60 * second)
        clock.advance(1.0)
    assert meter.lag == 29 * 40
    # the first second only set the baseline: the averages are still 0.3% short
    assert meter.head_rate == pytest.approx(100.0, rel=0.005)
    assert meter.consume_rate == pytest.approx(60.0, rel=0.005)
    assert meter.trend == pytest.approx(40.0, rel=0.005)
    assert meter.eta() is None
    assert meter.lag_seconds == pytest.approx(11.6, rel=0.005)


def test_lag_shrinking_gives_an_eta() -> None:
    clock = FakeClock()
    meter = LagMeter(window=5.0, now=clock)
    for second in range(30):
        meter.update(head=2000 + 50 * second, position=100 * second)
        clock.advance(1.0)
    assert meter.lag == 2000 + 50 * 29 - 100 * 29
    assert meter.trend == pytest.approx(-50.0, rel=0.005)
    eta = meter.eta()
    assert eta is not None
    assert eta == pytest.approx(550 / 50.0, rel=0.005)


def test_lag_at_rest_and_edge_cases() -> None:
    clock = FakeClock()
    meter = LagMeter(now=clock)
    assert (meter.lag, meter.lag_seconds, meter.eta()) == (0, 0.0, 0.0)
    meter.update(head=10, position=4)
    assert meter.lag == 6
    assert meter.lag_seconds == math.inf  # nothing has arrived since: no rate to divide by
    meter.update(head=9, position=3)  # stale reports never move backwards
    assert meter.lag == 6
    meter.update(head=10, position=12)  # position ahead of a stale head reads as no lag
    assert meter.lag == 0


# -- LatencyMeter --------------------------------------------------------------------------


def test_latency_quantiles_within_the_relative_error() -> None:
    clock = FakeClock()
    meter = LatencyMeter(relative_error=0.01, now=clock)
    for ms in range(1, 1001):
        meter.record(ms / 1000)
    p50, p90, p99, p100 = meter.quantiles([0.5, 0.9, 0.99, 1.0])
    assert p50 == pytest.approx(0.500, rel=0.01)
    assert p90 == pytest.approx(0.900, rel=0.01)
    assert p99 == pytest.approx(0.990, rel=0.01)
    assert p100 == pytest.approx(1.0, rel=0.01)
    assert meter.count == 1000
    assert meter.max == 1.0
    assert meter.mean == pytest.approx(0.5005)


def test_latency_window_slides_and_forgets() -> None:
    clock = FakeClock(0.0)
    meter = LatencyMeter(window=60.0, slots=6, now=clock)
    for _ in range(100):
        meter.record(5.0)  # a bad minute...
    clock.advance(30.0)
    for _ in range(100):
        meter.record(0.01)  # ...then recovery
    assert meter.quantile(0.99) == pytest.approx(5.0, rel=0.01)
    clock.advance(35.0)  # the bad slot left the window
    assert meter.count == 100
    assert meter.quantile(0.99) == pytest.approx(0.01, rel=0.01)
    clock.advance(3600.0)
    assert (meter.count, meter.quantile(0.5), meter.max, meter.mean) == (0, None, None, None)


def test_latency_zero_and_negative_values() -> None:
    meter = LatencyMeter(now=FakeClock())
    meter.record(-0.002)  # clock skew between hosts
    meter.record(0.0)
    meter.record(1e-9)
    meter.record(0.1)
    assert meter.negative == 1
    assert meter.quantiles([0.0, 0.5, 1.0]) == [0.0, 0.0, pytest.approx(0.1, rel=0.01)]
    with pytest.raises(ValueError, match=r"q=1\.5 must be in \[0, 1\]"):
        meter.quantile(1.5)


def test_latency_memory_is_bounded_by_the_bucket_range() -> None:
    meter = LatencyMeter(relative_error=0.01, now=FakeClock())
    rng = random.Random(7)
    for _ in range(100_000):
        meter.record(10 ** rng.uniform(-6, 4))  # 1 µs .. 3 hours
    buckets = sum(len(slot.buckets) for slot in meter._slots)
    assert buckets < 1200  # log(1e10) / log(1.0202)


@given(
    st.lists(st.floats(1e-5, 1e5), min_size=1, max_size=300),
    st.floats(0, 1),
    st.sampled_from([0.001, 0.01, 0.05]),
)
def test_any_quantile_is_within_the_relative_error_of_the_exact_one(
    latencies: list[float], q: float, error: float
) -> None:
    meter = LatencyMeter(relative_error=error, now=FakeClock())
    for x in latencies:
        meter.record(x)
    exact = sorted(latencies)[int(q * (len(latencies) - 1))]
    got = meter.quantile(q)
    assert got is not None
    assert abs(got - exact) <= error * exact * (1 + 1e-9)
