"""The one Clock: the protocol, the system clock, and the manual clock tests drive."""

from __future__ import annotations

import time

import anyio
import pytest

from diaspora.clock import Clock, ManualClock, SystemClock
from diaspora.supervision import Clock as SupervisionClock
from diaspora.supervision import ManualClock as SupervisionManualClock
from diaspora.testing._waiting import wait_until

pytestmark = pytest.mark.anyio


def test_supervision_re_exports_the_base_clock() -> None:
    assert SupervisionClock is Clock
    assert SupervisionManualClock is ManualClock


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(ManualClock(), Clock)


def test_system_clock_reads_the_real_clocks() -> None:
    clock = SystemClock()
    assert abs(clock.time() - time.time()) < 1.0
    assert abs(clock.monotonic() - time.monotonic()) < 1.0


async def test_manual_clock_moves_wall_and_monotonic_time_together() -> None:
    clock = ManualClock(start=10.0, wall=1_000.0)
    assert (clock.monotonic(), clock.time()) == (10.0, 1_000.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.sleep, 3.0)
        await wait_until(lambda: clock.sleepers == 1, interval=0.001)
        await clock.advance(2.0)
        assert clock.sleepers == 1  # not yet due
        await clock.advance(1.0)
    assert (clock.monotonic(), clock.time()) == (13.0, 1_003.0)
