"""QoS-aware streams: a producer's history, replay over request/reply, reconstruction."""

from typing import Final

from diaspora.streams.history import (
    Gap,
    HistoryBuffer,
    HistoryError,
    HistoryItem,
    HistoryStats,
    entry_size,
)
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
    "Gap",
    "HistoryBuffer",
    "HistoryError",
    "HistoryItem",
    "HistoryServer",
    "HistoryStats",
    "HoldLast",
    "LinearInterpolation",
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
