"""The time Diaspora's components count and wait in: one injectable :class:`Clock`.

Supervisors count restart intensity and wait out backoffs in it; mailboxes
and publishers time heartbeats, acknowledgements and retries with it. Tests
(and users' tests) inject a :class:`ManualClock`, which only moves when told
to, to drive all of that without waiting.

>>> import anyio
>>> async def demo() -> None:
...     clock = ManualClock()
...     async with anyio.create_task_group() as tg:
...         tg.start_soon(clock.sleep, 5.0)
...         while clock.sleepers == 0:       # let the sleeper start
...             await anyio.sleep(0)
...         await clock.advance(5.0)         # wakes the sleeper
...     print(clock.monotonic(), clock.time())
>>> anyio.run(demo)
5.0 5.0
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Monotonic seconds, wall-clock seconds, and sleeping in monotonic seconds."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clocks (the default): ``time.monotonic``, ``time.time``, ``anyio.sleep``."""

    # the C functions themselves: the clock is read on every message
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class ManualClock:
    """A clock that stands still until :meth:`advance` moves it.

    ``time()`` is ``wall`` plus the time advanced since the clock was made.
    """

    def __init__(self, start: float = 0.0, *, wall: float | None = None) -> None:
        self._start = start
        self._now = start
        self._wall = start if wall is None else wall
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()
        self._waiting = 0

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._wall + (self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        wake = anyio.Event()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), wake))
        self._waiting += 1
        try:
            await wake.wait()
        finally:
            self._waiting -= 1

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock right now."""
        return self._waiting

    async def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance({seconds}): time only moves forward")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, wake = heapq.heappop(self._sleepers)
            wake.set()
        await anyio.lowlevel.checkpoint()
