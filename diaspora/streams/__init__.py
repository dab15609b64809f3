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
    "ITEM",
    "Gap",
    "HistoryBuffer",
    "HistoryError",
    "HistoryItem",
    "HistoryServer",
    "HistoryStats",
    "ReplayError",
    "ReplayResult",
    "ReplayUnavailable",
    "collect_history",
    "entry_size",
    "fetch_history",
    "replay_subject",
]
