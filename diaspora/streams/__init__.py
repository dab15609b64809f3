"""QoS-aware streams: a producer's history, replay over request/reply, reconstruction.

- :mod:`~diaspora.streams.history`: :class:`HistoryBuffer`, what a producer emitted.
- :mod:`~diaspora.streams.replay`: :class:`HistoryServer` and :func:`fetch_history`.
- :mod:`~diaspora.streams.reconstruct`: stand-ins for items lost for good.
- :mod:`~diaspora.streams.qos`: :class:`QosSpec`, a stream's promises and overload policy.
- :mod:`~diaspora.streams.meter`: rate, lag and latency meters.
"""

from typing import Final

from diaspora.streams.history import (
    Gap,
    HistoryBuffer,
    HistoryError,
    HistoryItem,
    HistoryStats,
    entry_size,
)
from diaspora.streams.meter import LagMeter, LatencyMeter, RateMeter
from diaspora.streams.qos import AggregateFn, OverloadPolicy, Policy, QosSpec
from diaspora.streams.reconstruct import (
    BUILTIN_RECONSTRUCTORS,
    HoldLast,
    LinearInterpolation,
    ReconstructionError,
    Reconstructor,
    ZeroFill,
    fill_gap,
    load_reconstructor,
)
from diaspora.streams.replay import (
    HistoryServer,
    ReplayError,
    ReplayResult,
    ReplayUnavailable,
    collect_history,
    fetch_history,
    replay_subject,
)

#: Header: the producer's own item number on the subject (1, 2, 3...; a gap means lost items).
ITEM: Final = "Diaspora-Item"

__all__ = [
    "BUILTIN_RECONSTRUCTORS",
    "ITEM",
    "AggregateFn",
    "Gap",
    "HistoryBuffer",
    "HistoryError",
    "HistoryItem",
    "HistoryServer",
    "HistoryStats",
    "HoldLast",
    "LagMeter",
    "LatencyMeter",
    "LinearInterpolation",
    "OverloadPolicy",
    "Policy",
    "QosSpec",
    "RateMeter",
    "ReconstructionError",
    "Reconstructor",
    "ReplayError",
    "ReplayResult",
    "ReplayUnavailable",
    "ZeroFill",
    "collect_history",
    "entry_size",
    "fetch_history",
    "fill_gap",
    "load_reconstructor",
    "replay_subject",
]
