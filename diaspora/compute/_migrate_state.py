"""The state a live migration ships: a dict of arrays that knows which keys changed.

An actor that may migrate keeps its state in a :class:`MigratableState`.
Assigning or deleting a key marks it; a write *into* an array (numpy
in-place) is marked with :meth:`MigratableState.touch` after the write, or
by taking the array with :meth:`MigratableState.mutable` right before it
(with no ``await`` between the two). A pre-copy round ships the keys marked
since the previous round (:mod:`diaspora.compute._migrate_precopy`); the
destination assembles them with :class:`StateAssembly`.

>>> import numpy as np
>>> state = MigratableState({"a": np.zeros(4), "n": 0})
>>> sorted(state.take_dirty())           # a new state: everything is to send
['a', 'n']
>>> state.mutable("a")[1] = 5.0
>>> state["n"] = 1
>>> sorted(state.take_dirty()), state.dirty_bytes()
(['a', 'n'], 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from diaspora import codec

__all__ = ["MigratableState", "StateAssembly", "chunks_of"]


class MigratableState(dict[str, Any]):
    """A ``dict`` of numpy arrays (and small values) tracking changed keys for migration.

    Made from a restored checkpoint, it copies the arrays the codec decoded
    read-only, so ``restore`` can be ``self.state = MigratableState(state)``.

    >>> state = MigratableState(counts=np.zeros(3, dtype=np.int64))
    >>> state.mutable("counts")[0] += 1
    >>> state.is_dirty("counts")
    True
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key, value in self.items():
            if isinstance(value, np.ndarray) and not value.flags.writeable:
                # decoded from a checkpoint without a copy: make it the actor's own
                super().__setitem__(key, value.copy())
        self._dirty: set[str] = set(self)
        self._deleted: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._dirty.add(key)
        self._deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._dirty.discard(key)
        self._deleted.add(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def popitem(self) -> tuple[str, Any]:
        key = next(reversed(self.keys()))
        return key, self.pop(key)

    def clear(self) -> None:
        for key in list(self):
            del self[key]

    def touch(self, key: str) -> None:
        """Mark ``key`` changed (after writing into its array in place)."""
        if key not in self:
            raise KeyError(f"MigratableState.touch({key!r}): no such key")
        self._dirty.add(key)

    def mutable(self, key: str) -> Any:
        """The value of ``key``, marked changed: write into it before the next ``await``."""
        value = self[key]
        self._dirty.add(key)
        return value

    def is_dirty(self, key: str) -> bool:
        return key in self._dirty

    # -- what the migration reads ---------------------------------------------------------

    def mark_all(self) -> None:
        """Mark every key (a migration's first round ships the whole state)."""
        self._dirty = set(self)

    def dirty_bytes(self) -> int:
        """The size of the marked keys' arrays (other values count as 64 bytes each)."""
        return sum(_nbytes(super(MigratableState, self).get(k)) for k in self._dirty)

    def total_bytes(self) -> int:
        return sum(_nbytes(v) for v in self.values())

    def take_dirty(self) -> list[str]:
        """The marked keys, unmarked now (a change after this marks a key again)."""
        keys, self._dirty = sorted(self._dirty), set()
        return keys

    def take_deleted(self) -> list[str]:
        keys, self._deleted = sorted(self._deleted), set()
        return keys


def _nbytes(value: Any) -> int:
    return int(value.nbytes) if isinstance(value, np.ndarray) else 64


def chunks_of(key: str, value: Any, size: int) -> Iterator[dict[str, Any]]:
    """The wire messages of one key: raw array bytes (or the codec's) in ``size`` pieces.

    The bytes are copied now, so a later write into the array cannot tear what is sent.
    """
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        data = np.ascontiguousarray(value).tobytes()
        dtype, shape = value.dtype.str, list(value.shape)
    else:
        data, dtype, shape = codec.encode(value), "", []
    total = len(data)
    view = memoryview(data)
    for off in range(0, max(total, 1), size):
        yield {"k": key, "dt": dtype, "sh": shape, "off": off, "n": total,
               "b": bytes(view[off : off + size])}  # fmt: skip


class StateAssembly:
    """The destination's copy of a migrating state, built from :func:`chunks_of` pieces."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self._partial: dict[str, tuple[bytearray, int]] = {}
        self.received = 0

    def put(self, piece: Mapping[str, Any]) -> None:
        key, dtype = str(piece["k"]), str(piece["dt"])
        total, off = int(piece["n"]), int(piece["off"])
        data: bytes = piece["b"]
        self.received += len(data)
        if dtype:
            shape = tuple(int(n) for n in piece["sh"])
            array = self.values.get(key)
            if not (isinstance(array, np.ndarray) and array.dtype.str == dtype
                    and array.shape == shape):  # fmt: skip
                array = self.values[key] = np.empty(shape, dtype=np.dtype(dtype))
            flat = array.reshape(-1).view(np.uint8)
            flat[off : off + len(data)] = np.frombuffer(data, dtype=np.uint8)
            return
        buffer, got = self._partial.get(key) or (bytearray(total), 0)
        buffer[off : off + len(data)] = data
        got += len(data)
        if got >= total:
            self._partial.pop(key, None)
            self.values[key] = codec.decode(bytes(buffer))
        else:
            self._partial[key] = (buffer, got)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.values.pop(key, None)
            self._partial.pop(key, None)
