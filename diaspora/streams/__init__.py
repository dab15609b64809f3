"""QoS-aware streams: a producer's history, replay over request/reply, reconstruction.

- :mod:`~diaspora.streams.history`: :class:`HistoryBuffer`, what a producer emitted.
- :mod:`~diaspora.streams.replay`: :class:`HistoryServer` and :func:`fetch_history`.
- :mod:`~diaspora.streams.reconstruct`: stand-ins for items lost for good.
- :mod:`~diaspora.streams.qos`: :class:`QosSpec`, a stream's promises and overload policy.
- :mod:`~diaspora.streams.meter`: rate, lag and latency meters.
- :mod:`~diaspora.streams.flow`: overload policies at consumers, ``block`` at producers.
- :mod:`~diaspora.streams.registry`: a stream's declared QoS (KV ``diaspora-qos``).
"""

from diaspora.fabric.headers import ITEM
from diaspora.streams.flow import FlowGate, InputFlow, aggregate, flow_subject
from diaspora.streams.history import (
    Gap,
    HistoryBuffer,
    HistoryError,
    HistoryItem,
    HistorySpec,
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
from diaspora.streams.registry import declare_qos, lookup_qos
from diaspora.streams.replay import (
    HistoryServer,
    ReplayError,
    ReplayResult,
    ReplayUnavailable,
    collect_history,
    fetch_history,
    replay_subject,
)

__all__ = [
    "BUILTIN_RECONSTRUCTORS",
    "ITEM",
    "AggregateFn",
    "FlowGate",
    "Gap",
    "HistoryBuffer",
    "HistoryError",
    "HistoryItem",
    "HistoryServer",
    "HistorySpec",
    "HistoryStats",
    "HoldLast",
    "InputFlow",
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
    "aggregate",
    "collect_history",
    "declare_qos",
    "entry_size",
    "fetch_history",
    "fill_gap",
    "flow_subject",
    "load_reconstructor",
    "lookup_qos",
    "replay_subject",
]
