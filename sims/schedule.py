"""The fault schedule of one run: the scenario's timed faults plus random ones drawn with a seed.

Random faults come from a plain :class:`random.Random` seeded with the run's
seed, so a seed names one schedule. Each is drawn from a layer of
``[random].layers`` with these parameters:

- ``actor``: ``crash``, or ``hang`` past the actor's handle deadline;
- ``process``: ``kill_process``, or ``freeze`` for 0.2-2.5 s;
- ``server``: ``kill_server`` or ``pause_server`` for 0.2-2 s, or ``restart_server``;
- ``link``: ``latency`` 5-100 ms for 0.5-2 s, ``bandwidth`` 20-500 kB/s for
  0.5-2 s, ``reset_link``, ``blackhole`` or ``cut_link`` for 0.2-1.5 s.

A drawn server fault that would start while the server is still down or
paused (by the file's faults or an earlier draw) is moved after it, so that
every fault of the schedule can be carried out.

>>> from sims.scenario import RandomFaults
>>> spec = RandomFaults(3, ("server", "link"), (1.0, 5.0), (), ())
>>> [f.origin for f in draw_faults(spec, seed=7, traffic_s=10.0)]
['random[0]', 'random[1]', 'random[2]']
>>> draw_faults(spec, seed=7, traffic_s=10.0) == draw_faults(spec, seed=7, traffic_s=10.0)
True
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from typing import Final

from diaspora.testing import FaultKind, FaultSpec
from sims.scenario import RandomFaults, Scenario, TimedFault

__all__ = ["SERVER_GAP", "build_schedule", "draw_faults"]

#: Seconds kept free between two server faults (a restart takes about that long).
SERVER_GAP: Final = 0.5
#: How long a graceful restart occupies the server, for spacing.
_RESTART_S: Final = 1.0


def build_schedule(scenario: Scenario, seed: int) -> list[TimedFault]:
    """Every fault of one run, in time order: the file's, then the random ones (if any)."""
    faults = list(scenario.faults)
    if scenario.random is not None:
        faults += draw_faults(
            scenario.random, seed=seed, traffic_s=scenario.traffic.duration, fixed=faults
        )
    return sorted(faults, key=lambda timed: timed.at)


def draw_faults(
    spec: RandomFaults, *, seed: int, traffic_s: float, fixed: Sequence[TimedFault] = ()
) -> list[TimedFault]:
    """Draw ``spec.count`` faults with ``random.Random(seed)``, at times in ``spec.window``
    (default: from 10 % to 80 % of the traffic's ``traffic_s`` seconds), server faults kept
    clear of each other and of the ``fixed`` ones."""
    rng = random.Random(seed)
    start, end = spec.window if spec.window is not None else (0.1 * traffic_s, 0.8 * traffic_s)
    drawn = []
    for _ in range(spec.count):
        at = round(rng.uniform(start, end), 2)
        layer = rng.choice(spec.layers)
        drawn.append((at, _draw(layer, rng, spec)))
    drawn.sort(key=lambda item: item[0])
    busy = _server_busy(fixed)
    out = []
    for n, (at, fault) in enumerate(drawn):
        if fault.kind.layer == "server":
            at = _free_slot(at, _occupies(fault), busy)
            busy.append((at, at + _occupies(fault)))
        out.append(TimedFault(at, fault, f"random[{n}]"))
    return out


def _seconds(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 3)


def _draw(layer: str, rng: random.Random, spec: RandomFaults) -> FaultSpec:
    if layer == "actor":
        actor = rng.choice(spec.actors)
        if rng.random() < 0.5:
            return FaultSpec(FaultKind.CRASH, actor)
        return FaultSpec(FaultKind.HANG, actor)
    if layer == "process":
        target = rng.choice(spec.processes)
        if rng.random() < 0.5:
            return FaultSpec(FaultKind.KILL_PROCESS, target)
        return FaultSpec(FaultKind.FREEZE, target, seconds=_seconds(rng, 0.2, 2.5))
    if layer == "server":
        kind = rng.choice([FaultKind.KILL_SERVER, FaultKind.PAUSE_SERVER, FaultKind.RESTART_SERVER])
        if kind is FaultKind.RESTART_SERVER:
            return FaultSpec(kind)
        return FaultSpec(kind, duration=_seconds(rng, 0.2, 2.0))
    kind = rng.choice(
        [
            FaultKind.LATENCY,
            FaultKind.BANDWIDTH,
            FaultKind.RESET_LINK,
            FaultKind.BLACKHOLE,
            FaultKind.CUT_LINK,
        ]
    )
    if kind is FaultKind.LATENCY:
        return FaultSpec(kind, seconds=_seconds(rng, 0.005, 0.1), duration=_seconds(rng, 0.5, 2.0))
    if kind is FaultKind.BANDWIDTH:
        rate = rng.randint(20, 500) * 1000
        return FaultSpec(kind, rate=float(rate), duration=_seconds(rng, 0.5, 2.0))
    if kind is FaultKind.RESET_LINK:
        return FaultSpec(kind)
    return FaultSpec(kind, duration=_seconds(rng, 0.2, 1.5))


def _occupies(fault: FaultSpec) -> float:
    """Seconds a server fault keeps the server from taking another one."""
    if fault.kind is FaultKind.RESTART_SERVER:
        return _RESTART_S
    return fault.duration if fault.duration is not None else math.inf


def _server_busy(faults: Iterable[TimedFault]) -> list[tuple[float, float]]:
    """The intervals the server is down, paused or restarting under ``faults``."""
    busy: list[tuple[float, float]] = []
    for timed in sorted(faults, key=lambda t: t.at):
        kind = timed.fault.kind
        if kind.layer != "server":
            continue
        if kind in (FaultKind.RESTART_SERVER, FaultKind.RESUME_SERVER):
            # ends an open-ended kill or pause
            busy = [(a, min(b, timed.at)) if a <= timed.at else (a, b) for a, b in busy]
        if kind is not FaultKind.RESUME_SERVER:
            busy.append((timed.at, timed.at + _occupies(timed.fault)))
    return busy


def _free_slot(at: float, length: float, busy: Sequence[tuple[float, float]]) -> float:
    """The earliest time from ``at`` where ``length`` seconds (plus gaps) meet no busy interval.

    Times are compared in whole centiseconds (the schedule's resolution): a float
    comparison could find ``at`` still short of an interval's end after moving it there,
    and move it to the same time forever. Each interval moves ``at`` at most once (``at``
    only grows), so the search ends after at most ``len(busy)`` moves.
    """
    slot = _centis(at)
    gap = _centis(SERVER_GAP)
    span = math.inf if math.isinf(length) else _centis(length)
    moved = True
    while moved:
        moved = False
        for start, end in busy:
            if math.isinf(end):
                if slot + span + gap > _centis(start):
                    return slot / 100  # an open-ended outage: nothing later is free; keep it
                continue
            if slot < _centis(end) + gap and slot + span + gap > _centis(start):
                slot = _centis(end) + gap
                moved = True
    return slot / 100


def _centis(seconds: float) -> int:
    """``seconds`` in whole centiseconds, rounded up (an end is never cut short)."""
    return math.ceil(round(seconds * 100, 6))
