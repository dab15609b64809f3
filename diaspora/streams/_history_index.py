"""The in-memory index of a history: where each retained item is, per subject in item order.

An ``_Entry`` is one retained item (its RAM copy until written and pushed
out, and where its record is on disk); a ``_Subject`` holds one subject's
entries in item order, for bisecting by item number.
"""

from __future__ import annotations

import bisect

__all__: list[str] = []


class _Entry:
    """Where one retained item is: its RAM copy (until written and pushed out) and its record."""

    __slots__ = (
        "head",
        "headers",
        "item",
        "length",
        "offset",
        "payload",
        "segment",
        "seq",
        "size",
        "subject",
    )

    def __init__(self, seq: int, subject: str, item: int, size: int) -> None:
        self.seq = seq
        self.subject = subject
        self.item = item
        self.size = size
        self.payload: bytes | None = None
        self.headers: dict[str, str] | None = None
        self.segment = -1
        self.offset = 0
        self.length = 0  # of the whole record
        self.head = 0  # bytes of the record before the payload


class _Subject:
    """The retained items of one subject in item order: a list with a moving head."""

    __slots__ = ("entries", "head", "items")

    def __init__(self) -> None:
        self.items: list[int] = []
        self.entries: list[_Entry] = []
        self.head = 0

    def __len__(self) -> int:
        return len(self.items) - self.head

    def append(self, entry: _Entry) -> None:
        self.items.append(entry.item)
        self.entries.append(entry)

    def popleft(self) -> None:
        self.head += 1
        if self.head >= 1024 and self.head * 2 >= len(self.items):
            del self.items[: self.head]
            del self.entries[: self.head]
            self.head = 0

    def first(self) -> int:
        return self.items[self.head]

    def last(self) -> int:
        return self.items[-1]

    def at_or_after(self, item: int) -> _Entry | None:
        i = bisect.bisect_left(self.items, item, lo=self.head)
        return self.entries[i] if i < len(self.items) else None
