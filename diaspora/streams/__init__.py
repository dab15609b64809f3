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

#: Header: the producer's own item number on the subject (1, 2, 3...; a gap means lost items).
ITEM: Final = "Diaspora-Item"

__all__ = [
    "ITEM",
    "Gap",
    "HistoryBuffer",
    "HistoryError",
    "HistoryItem",
    "HistoryStats",
    "entry_size",
]
