"""Hypothesis strategies for faults and fault schedules.

Each strategy draws :class:`~diaspora.testing._faultspec.FaultSpec` values an
:class:`~diaspora.testing._injectors.Injector` carries out; a schedule is a
list of :class:`~diaspora.testing._faultspec.FaultStep` (a delay, then a
fault) for :meth:`Injector.run <diaspora.testing._injectors.Injector.run>`.
Values shrink towards the mildest fault: short, small, early. Needs
``hypothesis`` (a test dependency).

>>> from hypothesis import given, settings
>>> @settings(max_examples=20, database=None)
... @given(fault_schedules(fault_specs(actors=["root.sum"], server=False, link=False)))
... def test_schedule(schedule: list[FaultStep]) -> None:
...     assert all(step.fault.target == "root.sum" for step in schedule)
>>> test_schedule()
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from hypothesis import strategies as st

from diaspora.testing._faultspec import FaultKind, FaultSpec, FaultStep

__all__ = [
    "actor_faults",
    "fault_schedules",
    "fault_specs",
    "link_faults",
    "process_faults",
    "seconds",
    "server_faults",
]


def seconds(low: float, high: float) -> st.SearchStrategy[float]:
    """A duration in ``[low, high]``, to the millisecond (shrinks towards ``low``)."""
    return st.floats(low, high, allow_nan=False, allow_infinity=False).map(lambda s: round(s, 3))


def actor_faults(
    actors: Sequence[str], *, hang_seconds: Sequence[float | None] = (None, 0.2)
) -> st.SearchStrategy[FaultSpec]:
    """Crash or hang one of ``actors`` at its next message.

    ``hang_seconds`` are the hang lengths to choose from; ``None`` hangs past
    the actor's ``handle_deadline`` (which makes it a crash), a short one is
    only a slow message.
    """
    if not actors:
        raise ValueError("actor_faults: name at least one actor id")
    target = st.sampled_from(list(actors))
    return st.one_of(
        target.map(lambda a: FaultSpec(FaultKind.CRASH, a)),
        st.builds(
            lambda a, s: FaultSpec(FaultKind.HANG, a, seconds=s),
            target,
            st.sampled_from(list(hang_seconds)),
        ),
    )


def process_faults(
    processes: Sequence[str], *, freeze: tuple[float, float] | None = (0.2, 3.0)
) -> st.SearchStrategy[FaultSpec]:
    """SIGKILL the process of one of ``processes`` (actor ids or node paths), or freeze it
    for a time drawn from ``freeze`` (longer than the node's heartbeat timeout: killed by the
    watchdog; ``None``: no freezes)."""
    if not processes:
        raise ValueError("process_faults: name at least one actor id or node path")
    target = st.sampled_from(list(processes))
    kill = target.map(lambda p: FaultSpec(FaultKind.KILL_PROCESS, p))
    if freeze is None:
        return kill
    frozen = st.builds(
        lambda p, s: FaultSpec(FaultKind.FREEZE, p, seconds=s), target, seconds(*freeze)
    )
    return st.one_of(kill, frozen)


def server_faults(
    *, down: tuple[float, float] = (0.1, 2.0), restart: bool = True, pause: bool = True
) -> st.SearchStrategy[FaultSpec]:
    """Kill the server for a while (then it comes back), pause it for a while, or restart it
    gracefully."""
    choices = [st.builds(lambda d: FaultSpec(FaultKind.KILL_SERVER, duration=d), seconds(*down))]
    if restart:
        choices.append(st.just(FaultSpec(FaultKind.RESTART_SERVER)))
    if pause:
        choices.append(
            st.builds(lambda d: FaultSpec(FaultKind.PAUSE_SERVER, duration=d), seconds(*down))
        )
    return st.one_of(choices)


def link_faults(
    *,
    duration: tuple[float, float] = (0.1, 2.0),
    latency: tuple[float, float] = (0.001, 0.2),
    rate: tuple[int, int] = (20_000, 2_000_000),
    kinds: Collection[FaultKind] | None = None,
) -> st.SearchStrategy[FaultSpec]:
    """Degrade or break the link for a while: latency, a bandwidth cap, a reset of every
    connection, a blackhole, or a cut (refused connections); ``kinds`` narrows the choice."""
    lasting = seconds(*duration)
    options = {
        FaultKind.LATENCY: st.builds(
            lambda s, j, d: FaultSpec(FaultKind.LATENCY, seconds=s, jitter=j, duration=d),
            seconds(*latency),
            st.sampled_from([0.0, latency[0]]),
            lasting,
        ),
        FaultKind.BANDWIDTH: st.builds(
            lambda r, d: FaultSpec(FaultKind.BANDWIDTH, rate=r, duration=d),
            st.integers(*rate).map(lambda r: -(-r // 1000) * 1000),
            lasting,
        ),
        FaultKind.RESET_LINK: st.just(FaultSpec(FaultKind.RESET_LINK)),
        FaultKind.BLACKHOLE: lasting.map(lambda d: FaultSpec(FaultKind.BLACKHOLE, duration=d)),
        FaultKind.CUT_LINK: lasting.map(lambda d: FaultSpec(FaultKind.CUT_LINK, duration=d)),
    }
    wanted = [options[k] for k in options if kinds is None or k in kinds]
    if not wanted:
        raise ValueError(
            f"link_faults: none of {sorted(k.value for k in kinds or ())} is a link fault"
        )
    return st.one_of(wanted)


def fault_specs(
    *,
    actors: Sequence[str] = (),
    processes: Sequence[str] = (),
    server: bool = True,
    link: bool = True,
) -> st.SearchStrategy[FaultSpec]:
    """Any fault the arguments allow: actor faults on ``actors``, process faults on
    ``processes``, server faults if ``server``, link faults if ``link``."""
    choices = []
    if actors:
        choices.append(actor_faults(actors))
    if processes:
        choices.append(process_faults(processes))
    if server:
        choices.append(server_faults())
    if link:
        choices.append(link_faults())
    if not choices:
        raise ValueError("fault_specs: nothing to break (no actors, processes, server or link)")
    return st.one_of(choices)


def fault_schedules(
    faults: st.SearchStrategy[FaultSpec],
    *,
    min_size: int = 0,
    max_size: int = 8,
    max_delay: float = 1.0,
) -> st.SearchStrategy[list[FaultStep]]:
    """Lists of (delay up to ``max_delay`` seconds, fault) steps."""
    step = st.builds(FaultStep, seconds(0.0, max_delay), faults)
    return st.lists(step, min_size=min_size, max_size=max_size)
