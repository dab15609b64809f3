"""QoS-aware streams: a producer's history, replay over request/reply, reconstruction.

- :class:`HistorySpec` / :class:`HistoryBuffer`: what a producer emitted (memory, then disk).
- :class:`HistoryServer` and :func:`fetch_history`: replay of it over request/reply.
- :class:`Reconstructor` (:class:`HoldLast`, :class:`LinearInterpolation`,
  :class:`ZeroFill`): stand-ins for items lost for good.
- :class:`QosSpec` / :class:`OverloadPolicy`: a stream's promises and overload policy,
  declared once (:func:`declare_qos`, kept in KV ``diaspora-qos``).
- :class:`InputFlow`, :class:`FlowGate`: overload policies at consumers, ``block`` at
  producers; :class:`RateMeter`, :class:`LagMeter`, :class:`LatencyMeter` measure.
- The runtime stages that apply all this to every actor: :class:`GapRecovery`,
  :class:`QosAdmission`, :class:`FlowGateStage`, :class:`HistoryTap` (see
  :mod:`diaspora.stage`).
"""

from diaspora.streams._flow import FlowGate, InputFlow, aggregate, flow_subject
from diaspora.streams._history import (
    Gap,
    HistoryBuffer,
    HistoryError,
    HistoryItem,
    HistorySpec,
    HistoryStats,
    entry_size,
)
from diaspora.streams._meter import LagMeter, LatencyMeter, RateMeter
from diaspora.streams._qos import AggregateFn, OverloadPolicy, Policy, QosSpec
from diaspora.streams._reconstruct import (
    BUILTIN_RECONSTRUCTORS,
    HoldLast,
    LinearInterpolation,
    ReconstructionError,
    Reconstructor,
    ZeroFill,
    fill_gap,
    load_reconstructor,
)
from diaspora.streams._recovery import GapRecovery
from diaspora.streams._registry import declare_qos, lookup_qos
from diaspora.streams._replay import (
    HistoryServer,
    ReplayError,
    ReplayResult,
    ReplayUnavailable,
    collect_history,
    fetch_history,
    replay_subject,
)
from diaspora.streams._stages import FlowGateStage, HistoryTap, QosAdmission

__all__ = [
    "BUILTIN_RECONSTRUCTORS",
    "AggregateFn",
    "FlowGate",
    "FlowGateStage",
    "Gap",
    "GapRecovery",
    "HistoryBuffer",
    "HistoryError",
    "HistoryItem",
    "HistoryServer",
    "HistorySpec",
    "HistoryStats",
    "HistoryTap",
    "HoldLast",
    "InputFlow",
    "LagMeter",
    "LatencyMeter",
    "LinearInterpolation",
    "OverloadPolicy",
    "Policy",
    "QosAdmission",
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
