"""A history's spec, and what it hands out: stored items, gaps, its size and counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from diaspora.errors import ConfigError

if TYPE_CHECKING:
    from diaspora.streams._history import HistoryBuffer

__all__ = ["Gap", "HistoryItem", "HistorySpec", "HistoryStats", "entry_size"]


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One item as the producer emitted it: its subject, item number, payload and headers."""

    subject: str
    item: int
    payload: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Gap:
    """Items ``first..last`` (inclusive) of ``subject`` that are not available."""

    subject: str
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """A snapshot of a history's size, and counters since it was opened."""

    items: int
    bytes: int
    memory_items: int
    memory_bytes: int
    disk_bytes: int
    segments: int
    subjects: int
    added: int
    evicted: int
    duplicates: int
    oversize: int
    truncated_bytes: int
    corrupt: int


def entry_size(payload: bytes | bytearray | memoryview, headers: Mapping[str, str]) -> int:
    """What one item counts against ``max_bytes``: payload bytes plus header characters.

    >>> entry_size(b"abc", {"k": "vv"})
    6
    """
    return len(payload) + sum(map(len, headers)) + sum(map(len, headers.values()))


@dataclass(frozen=True, slots=True)
class HistorySpec:
    """How much a producing actor keeps of what it emitted (``Actor.history``).

    ``directory`` defaults to ``<state dir>/history/<actor id>`` (the state
    dir is ``$DIASPORA_STATE_DIR``, else ``~/.local/state/diaspora``), so a
    restarted producer finds its history again.

    >>> HistorySpec(max_items=1000).max_bytes
    268435456
    """

    max_items: int = 100_000
    max_bytes: int = 256 * 1024 * 1024
    memory_bytes: int = 32 * 1024 * 1024
    directory: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_items", "max_bytes", "memory_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"history.{name}: {value!r} must be an integer >= 1")

    def open(self, default_directory: Path, name: str) -> HistoryBuffer:
        """The buffer this spec describes (in ``directory`` or ``default_directory``)."""
        from diaspora.streams._history import HistoryBuffer

        directory = Path(self.directory) if self.directory else default_directory
        return HistoryBuffer(
            directory,
            max_items=self.max_items,
            max_bytes=self.max_bytes,
            memory_bytes=self.memory_bytes,
            name=name,
        )
