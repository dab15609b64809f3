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
from typing import Any, Final

import numpy as np

from diaspora import codec

__all__ = ["BLOCK", "MigratableState", "StateAssembly", "chunks_of"]

#: The unit in which writes into part of a large array are tracked and sent.
BLOCK: Final = 64 * 1024


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
        #: keys of which only some BLOCK-sized pieces changed (their block numbers)
        self._blocks: dict[str, set[int]] = {}
        self._deleted: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._dirty.add(key)
        self._blocks.pop(key, None)
        self._deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._dirty.discard(key)
        self._blocks.pop(key, None)
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

    def touch(self, key: str, start: int | None = None, stop: int | None = None) -> None:
        """Mark ``key`` changed (after writing into its array in place); with ``start`` and
        ``stop``, only those elements of the flattened array (sent by 64 KiB blocks)."""
        if key not in self:
            raise KeyError(f"MigratableState.touch({key!r}): no such key")
        value = dict.__getitem__(self, key)
        if start is None or not isinstance(value, np.ndarray) or key in self._dirty:
            self._dirty.add(key)
            self._blocks.pop(key, None)
            return
        end = value.size if stop is None else stop
        low, high = start * value.itemsize, max(start + 1, end) * value.itemsize
        self._blocks.setdefault(key, set()).update(range(low // BLOCK, (high - 1) // BLOCK + 1))

    def mutable(self, key: str, start: int | None = None, stop: int | None = None) -> Any:
        """The value of ``key``, marked changed: write into it before the next ``await``.

        With ``start``/``stop``: a writable view of those elements of the flattened
        array, and only the 64 KiB blocks they lie in are marked.
        """
        value = self[key]
        if start is not None and not (isinstance(value, np.ndarray) and value.flags.c_contiguous):
            raise ValueError(
                f"MigratableState.mutable({key!r}, {start}, {stop}): a range needs a C-contiguous "
                "numpy array (a view of another layout would be a copy); use mutable(key)"
            )
        self.touch(key, start, stop)
        if start is None:
            return value
        return value.reshape(-1)[start:stop]

    def is_dirty(self, key: str) -> bool:
        return key in self._dirty

    # -- what the migration reads ---------------------------------------------------------

    def mark_all(self) -> None:
        """Mark every key (a migration's first round ships the whole state)."""
        self._dirty, self._blocks = set(self), {}

    def dirty_bytes(self) -> int:
        """The size of what is marked (other values than arrays count as 64 bytes each)."""
        whole = sum(_nbytes(dict.get(self, k)) for k in self._dirty)
        return whole + sum(len(blocks) * BLOCK for blocks in self._blocks.values())

    def total_bytes(self) -> int:
        return sum(_nbytes(v) for v in self.values())

    def take_changes(self) -> list[tuple[str, list[int] | None]]:
        """What is marked, unmarked now: each key with its changed blocks (``None``: all)."""
        changes: list[tuple[str, list[int] | None]] = [(k, None) for k in sorted(self._dirty)]
        changes += [(k, sorted(b)) for k, b in sorted(self._blocks.items())]
        self._dirty, self._blocks = set(), {}
        return changes

    def take_dirty(self) -> list[str]:
        """The marked keys, unmarked now (a change after this marks a key again)."""
        return sorted(key for key, _ in self.take_changes())

    def take_deleted(self) -> list[str]:
        keys, self._deleted = sorted(self._deleted), set()
        return keys


def _nbytes(value: Any) -> int:
    return int(value.nbytes) if isinstance(value, np.ndarray) else 64


def chunks_of(
    key: str, value: Any, size: int, blocks: list[int] | None = None
) -> Iterator[dict[str, Any]]:
    """The wire messages of one key: raw array bytes (or the codec's) in ``size`` pieces;
    with ``blocks``, only those 64 KiB blocks of the array.

    The bytes are copied now, so a later write into the array cannot tear what is sent.
    """
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        flat = np.ascontiguousarray(value).reshape(-1).view(np.uint8)
        dtype, shape, total = value.dtype.str, list(value.shape), int(flat.size)
        runs = [(0, total)] if blocks is None else _runs(blocks, total)
        for low, high in runs:
            data = flat[low:high].tobytes()
            for off in range(0, max(len(data), 1), size):
                yield {"k": key, "dt": dtype, "sh": shape, "off": low + off, "n": total,
                       "b": data[off : off + size]}  # fmt: skip
        return
    data = codec.encode(value)
    for off in range(0, max(len(data), 1), size):
        yield {"k": key, "dt": "", "sh": [], "off": off, "n": len(data),
               "b": data[off : off + size]}  # fmt: skip


def _runs(blocks: list[int], total: int) -> list[tuple[int, int]]:
    """Byte ranges of consecutive ``blocks`` (sorted), within ``total`` bytes."""
    runs: list[tuple[int, int]] = []
    for block in blocks:
        low, high = block * BLOCK, min(total, (block + 1) * BLOCK)
        if low >= total:
            continue
        if runs and runs[-1][1] == low:
            runs[-1] = (runs[-1][0], high)
        else:
            runs.append((low, high))
    return runs


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
