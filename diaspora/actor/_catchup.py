"""Catch-up after a (re)start: the backlog that existed at start, and the lag until it is gone.

At start the runtime notes each input's last stream sequence (the
*target*). Until every position has reached its target, the actor is
catching up: it pulls larger batches and reports its lag as an event every
second; then ``caught_up`` is set and one ``caught_up`` event says how long
it took.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import anyio

from diaspora.events import CaughtUp, Lag
from diaspora.fabric._partitions import last_seq_of
from diaspora.stage import Host

__all__ = ["CatchUp"]

_LAG_EVERY_S: Final = 1.0


class CatchUp:
    """Tracks one start's backlog (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self.targets: dict[str, int] = {}
        self.event = anyio.Event()
        self.started_at = host.clock.monotonic()
        #: seconds from start to caught up (``None`` until then)
        self.after: float | None = None

    async def start(
        self, positions: dict[str, int], filters: Mapping[str, Sequence[str]] | None = None
    ) -> dict[str, int]:
        """First sequence to consume per input; unset ``positions`` start at the stream's first.

        An input read through ``filters`` (one partition's share) is caught up at
        its newest matching message, not the stream's.
        """
        host = self._host
        starts: dict[str, int] = {}
        backlog = 0
        for subject in host.inputs:
            first, last = await host.fabric.stream_bounds(subject)
            if filters and subject in filters:
                last = await last_seq_of(host.fabric, subject, filters[subject])
            position = positions.get(subject)
            if position is None:
                # never consumed: start at the oldest item the stream still has
                position = positions[subject] = max(0, first - 1)
            starts[subject] = position + 1
            self.targets[subject] = last
            backlog += max(0, last - position)
        if backlog == 0:
            self.mark(0)
        else:
            host.log.info("catching_up", backlog=backlog, positions=dict(positions))
            await host.event(Lag(name=host.id, lag=backlog, catching_up=True))
        return starts

    def lag(self, positions: Mapping[str, int]) -> int:
        return sum(max(0, t - positions.get(s, 0)) for s, t in self.targets.items())

    def check(self, positions: Mapping[str, int]) -> None:
        """Set ``caught_up`` once every input has reached its target."""
        if not self.event.is_set() and self.lag(positions) == 0:
            self.mark(self._host.stats.handled)

    def mark(self, replayed: int) -> None:
        if self.event.is_set():
            return
        self.after = self._host.clock.monotonic() - self.started_at
        self.event.set()
        if replayed:
            duration = self.after
            self._host.log.info(
                "caught_up",
                replayed=replayed,
                duration_s=round(duration, 3),
                rate=round(replayed / duration, 1) if duration > 0 else None,
            )

    async def report(self, positions: Mapping[str, int]) -> None:
        """Every second: the lag while catching up, then one ``caught_up`` event."""
        host = self._host
        announced = self.event.is_set()
        while True:
            await host.clock.sleep(_LAG_EVERY_S)
            if self.event.is_set():
                if not announced:
                    announced = True
                    await host.event(
                        CaughtUp(name=host.id, replayed=host.stats.handled, duration_s=self.after)
                    )
                continue
            await host.event(Lag(name=host.id, lag=self.lag(positions), catching_up=True))
