"""Meters a stream's runtime watches to decide policy switches: rate, lag, latency.

All three are pure and take an injectable ``now`` (a function returning monotonic
seconds), so tests drive them without waiting:

>>> t = [0.0]
>>> rate = RateMeter(window=10.0, now=lambda: t[0])
>>> for second in range(30):
...     rate.mark(100)          # 100 items in each second
...     t[0] += 1.0
>>> round(rate.rate)
100
>>> latency = LatencyMeter(now=lambda: t[0])
>>> for ms in range(1, 101):
...     latency.record(ms / 1000)
>>> round(latency.quantile(0.5), 3), round(latency.quantile(0.99), 3)
(0.05, 0.099)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Final

__all__ = ["LagMeter", "LatencyMeter", "RateMeter"]


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name}={value!r} must be a number > 0")
    return float(value)


class RateMeter:
    """Events per second: an exponentially weighted moving average over about ``window`` s.

    Counts are gathered into ``tick``-second steps; each finished step moves
    the average toward its rate with weight ``1 - exp(-tick / window)``, and
    idle steps decay it toward zero. Before the first step ends, ``rate`` is
    the plain mean since the meter started.
    """

    def __init__(
        self, window: float = 10.0, *, tick: float = 1.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = _positive("window", window)
        self.tick = _positive("tick", tick)
        if self.tick > self.window:
            raise ValueError(f"tick={tick} must not exceed window={window}")
        self._now = now
        self._alpha = 1.0 - math.exp(-self.tick / self.window)
        self._started = self._tick_start = now()
        self._pending = 0
        self._ewma: float | None = None
        self.total = 0

    def mark(self, n: int = 1) -> None:
        """Count ``n`` events now."""
        if n < 0:
            raise ValueError(f"mark: n={n} must be >= 0")
        self._advance(self._now())
        self._pending += n
        self.total += n

    @property
    def rate(self) -> float:
        """Events per second, recent (the moving average)."""
        now = self._now()
        self._advance(now)
        if self._ewma is None:
            elapsed = now - self._started
            return self._pending / elapsed if elapsed > 0 else 0.0
        return self._ewma

    @property
    def mean_rate(self) -> float:
        """Events per second since the meter started."""
        elapsed = self._now() - self._started
        return self.total / elapsed if elapsed > 0 else 0.0

    def _advance(self, now: float) -> None:
        steps = int((now - self._tick_start) // self.tick)
        if steps <= 0:
            return
        instant = self._pending / self.tick
        if self._ewma is None:
            self._ewma = instant
        else:
            self._ewma += self._alpha * (instant - self._ewma)
        self._ewma *= (1.0 - self._alpha) ** (steps - 1)  # the idle steps since
        self._pending = 0
        self._tick_start += steps * self.tick


class LagMeter:
    """How far a consumer is behind its stream, whether that grows, and when it catches up.

    Feed it ``update(head, position)``: the stream's newest sequence (or
    item number) and the last one the consumer has handled.

    >>> t = [0.0]
    >>> lag = LagMeter(window=5.0, now=lambda: t[0])
    >>> for second in range(20):          # produced 100/s, consumed 80/s
    ...     lag.update(head=100 * second, position=80 * second)
    ...     t[0] += 1.0
    >>> lag.lag, round(lag.trend), lag.eta() is None
    (380, 20, True)
    """

    def __init__(
        self, window: float = 10.0, *, tick: float = 1.0, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._now = now
        self.head_rate_meter = RateMeter(window, tick=tick, now=now)
        self.consume_rate_meter = RateMeter(window, tick=tick, now=now)
        self._head: int | None = None
        self._position: int | None = None

    def update(self, head: int, position: int) -> None:
        """Record the stream's head and the consumer's position now."""
        if self._head is not None and head > self._head:
            self.head_rate_meter.mark(head - self._head)
        if self._position is not None and position > self._position:
            self.consume_rate_meter.mark(position - self._position)
        self._head = head if self._head is None else max(head, self._head)
        self._position = position if self._position is None else max(position, self._position)

    @property
    def lag(self) -> int:
        """Items the consumer is behind (0 before the first update)."""
        if self._head is None or self._position is None:
            return 0
        return max(0, self._head - self._position)

    @property
    def head_rate(self) -> float:
        """Items/s arriving on the stream."""
        return self.head_rate_meter.rate

    @property
    def consume_rate(self) -> float:
        """Items/s the consumer handles."""
        return self.consume_rate_meter.rate

    @property
    def trend(self) -> float:
        """Items/s the lag grows by (negative: shrinking)."""
        return self.head_rate - self.consume_rate

    @property
    def lag_seconds(self) -> float:
        """The lag in seconds of production (lag / arrival rate); ``inf`` if nothing arrives.

        For the age of the items being handled, use a :class:`LatencyMeter`.
        """
        lag = self.lag
        if lag == 0:
            return 0.0
        rate = self.head_rate
        return lag / rate if rate > 0 else math.inf

    def eta(self) -> float | None:
        """Seconds until the consumer catches up at current rates; ``None`` if it is not."""
        lag = self.lag
        if lag == 0:
            return 0.0
        shrink = -self.trend
        return lag / shrink if shrink > 0 else None


_MIN_LATENCY: Final = 1e-6


class LatencyMeter:
    """End-to-end latency quantiles over the last ``window`` seconds, in bounded memory.

    Latencies go into logarithmic buckets (a DDSketch), so any quantile is
    within ``relative_error`` of the exact one, whatever the spread, with at
    most a few thousand counters. The window slides in ``slots`` steps.
    Latencies at or below ``min_latency`` (1 µs) count as zero; negative ones
    (clock skew between hosts) too, and are counted in ``negative``.
    """

    def __init__(
        self,
        window: float = 60.0,
        *,
        slots: int = 6,
        relative_error: float = 0.01,
        min_latency: float = _MIN_LATENCY,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = _positive("window", window)
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots={slots!r} must be an integer >= 1")
        if not 0 < relative_error < 1:
            raise ValueError(f"relative_error={relative_error!r} must be in (0, 1)")
        self.relative_error = relative_error
        self.min_latency = _positive("min_latency", min_latency)
        self._now = now
        self._gamma = (1 + relative_error) / (1 - relative_error)
        self._log_gamma = math.log(self._gamma)
        self._slot_s = self.window / slots
        self._slots: list[_Slot] = [_Slot() for _ in range(slots)]
        self._epoch = math.floor(now() / self._slot_s)  # the slot ``now`` falls in
        self.negative = 0

    def record(self, seconds: float) -> None:
        """Count one latency, in seconds."""
        slot = self._current()
        if seconds < 0:
            self.negative += 1
        if seconds <= self.min_latency or math.isnan(seconds):
            slot.zeros += 1
            key = None
        else:
            key = math.ceil(math.log(seconds) / self._log_gamma)
            slot.buckets[key] = slot.buckets.get(key, 0) + 1
        slot.count += 1
        slot.total += max(seconds, 0.0)
        slot.max = max(slot.max, seconds)

    @property
    def count(self) -> int:
        """Latencies recorded within the window."""
        self._current()
        return sum(s.count for s in self._slots)

    @property
    def max(self) -> float | None:
        self._current()
        live = [s.max for s in self._slots if s.count]
        return max(live) if live else None

    @property
    def mean(self) -> float | None:
        self._current()
        count = sum(s.count for s in self._slots)
        return sum(s.total for s in self._slots) / count if count else None

    def quantile(self, q: float) -> float | None:
        """The ``q``-quantile (``0 <= q <= 1``: 0.5 median, 0.99 p99); ``None`` if empty."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Several quantiles in one pass over the buckets."""
        wanted = list(qs)
        for q in wanted:
            if not 0 <= q <= 1:
                raise ValueError(f"quantile q={q!r} must be in [0, 1]")
        self._current()
        zeros = sum(s.zeros for s in self._slots)
        merged: dict[int, int] = {}
        for slot in self._slots:
            for key, n in slot.buckets.items():
                merged[key] = merged.get(key, 0) + n
        count = zeros + sum(merged.values())
        if count == 0:
            return [None for _ in wanted]
        keys = sorted(merged)
        out: list[float | None] = []
        for q in wanted:
            rank = int(q * (count - 1))  # 0-based rank of the wanted latency
            if rank < zeros:
                out.append(0.0)
                continue
            seen = zeros
            for key in keys:
                seen += merged[key]
                if seen > rank:
                    out.append(2 * self._gamma**key / (self._gamma + 1))
                    break
        return out

    def _current(self) -> _Slot:
        """The slot for now, after clearing those that left the window."""
        epoch = math.floor(self._now() / self._slot_s)
        moved = epoch - self._epoch
        if moved > 0:
            for step in range(1, min(moved, len(self._slots)) + 1):
                self._slots[(self._epoch + step) % len(self._slots)] = _Slot()
            self._epoch = epoch
        return self._slots[self._epoch % len(self._slots)]


class _Slot:
    __slots__ = ("buckets", "count", "max", "total", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.total = 0.0
        self.max = -math.inf
