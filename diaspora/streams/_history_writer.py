"""The writer thread of a history: it appends records to segment files, off the caller's thread.

The owner (:class:`~diaspora.streams.HistoryBuffer`) queues operations: a
``_Chunk`` of small records it framed itself, a large ``_Record`` for the
writer to frame, a ``_Switch`` to a new segment, a ``_Sync`` (fsync). The
writer hands them to the OS in batches (one ``writev`` for many small
records) and blocks the owner when it falls ``max_pending`` bytes behind.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from diaspora.errors import HistoryError
from diaspora.streams._history_format import _RECORD, _frame

__all__: list[str] = []

_WRITEV_PARTS: Final = 960  # under IOV_MAX (1024)
_WRITEV_BYTES: Final = 8 * 1024 * 1024
_COALESCE_BYTES: Final = 64 * 1024
_CHUNK_BYTES: Final = 1024 * 1024
_COALESCE_S: Final = 0.0005


@dataclass(slots=True)
class _Record:
    """A large record, framed (CRC and all) by the writer thread, off the caller's thread."""

    seq: int
    item: int
    meta: bytes
    payload: bytes


@dataclass(slots=True)
class _Chunk:
    """Small records already framed by the owner thread, appended to while still queued."""

    data: bytearray
    top_seq: int


@dataclass(slots=True)
class _Switch:
    """Write what follows to ``fd`` (a new segment); the writer closes the previous one."""

    fd: int


@dataclass(slots=True)
class _Sync:
    directory: Path


_Op = _Record | _Chunk | _Switch | _Sync


class _Writer:
    """The thread that appends records to segment files, so ``add`` never waits on the disk.

    The owner thread only bumps the ``_queued*`` counters and this thread only
    the ``_written*`` ones, so they need no lock; ``_lock`` guards the queue
    (the owner appends small records to a queued chunk), ``_cond`` is for
    sleeping and waking.
    """

    def __init__(self, name: str, max_pending: int) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[_Op] = deque()
        self._max_pending = max_pending
        self._queued = self._queued_bytes = 0
        self._written = self._written_bytes = 0
        self._idle = False
        self._closing = False
        self.error: OSError | None = None
        self.written_seq = 0  # every record up to this seq is written
        self._name = name
        self._thread = threading.Thread(target=self._run, name=f"history-{name}", daemon=True)
        self._thread.start()

    def submit(self, op: _Op, size: int = 0) -> None:
        self._wait_room()
        with self._lock:
            self._queue.append(op)
        self._queued += 1
        self._queued_bytes += size
        self._wake()

    def submit_small(self, seq: int, item: int, meta: bytes, payload: bytes) -> None:
        self._wait_room()
        magic_crc, tail = _frame(seq, item, meta, payload)
        with self._lock:
            queue = self._queue
            chunk = queue[-1] if queue else None
            if isinstance(chunk, _Chunk) and len(chunk.data) < _CHUNK_BYTES:
                chunk.data += magic_crc
                chunk.top_seq = seq
            else:
                chunk = _Chunk(bytearray(magic_crc), seq)
                queue.append(chunk)
                self._queued += 1
            chunk.data += tail
            chunk.data += meta
            chunk.data += payload
        self._queued_bytes += _RECORD.size + len(meta) + len(payload)
        self._wake()

    def _wait_room(self) -> None:
        if self._queued_bytes - self._written_bytes > self._max_pending:
            with self._cond:  # backpressure: the disk is slower than the producer
                while (
                    self._queued_bytes - self._written_bytes > self._max_pending
                    and self.error is None
                ):
                    self._cond.wait()
        self._raise_if_failed()

    def _wake(self) -> None:
        if self._idle:
            with self._cond:
                self._cond.notify_all()

    def drain(self) -> None:
        """Wait until everything submitted so far is written (or the writer failed)."""
        target = self._queued
        if self._written < target:
            with self._cond:
                self._cond.notify_all()
                while self._written < target and self.error is None:
                    self._cond.wait()
        self._raise_if_failed()

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _raise_if_failed(self) -> None:
        if self.error is not None:
            raise HistoryError(
                f"history {self._name!r}: writing to disk failed ({self.error}); "
                "free disk space or fix the directory's permissions, then restart the producer"
            ) from self.error

    def _run(self) -> None:
        fd = -1
        queue = self._queue
        while True:
            with self._cond:
                self._idle = True
                while not queue and not self._closing:
                    self._cond.wait()
                self._idle = False
            if not queue:
                break
            if self._queued_bytes - self._written_bytes < _COALESCE_BYTES and not self._closing:
                time.sleep(_COALESCE_S)  # let small records gather into one write
            with self._lock:
                batch = list(queue)
                queue.clear()
            try:
                fd = self._write_batch(fd, batch)
            except OSError as exc:
                with self._cond:
                    self.error = exc
                    self._cond.notify_all()
                break
        if fd >= 0:
            os.close(fd)

    def _write_batch(self, fd: int, batch: list[_Op]) -> int:
        parts: list[bytes | bytearray] = []
        size = ops = top = 0

        def write() -> None:
            nonlocal parts, size, ops
            _write_all(fd, parts)
            self.written_seq = max(self.written_seq, top)
            self._written_bytes += size
            self._written += ops
            with self._cond:
                self._cond.notify_all()
            parts, size, ops = [], 0, 0

        for op in batch:
            ops += 1
            if isinstance(op, _Chunk):
                parts.append(op.data)
                size += len(op.data)
                top = op.top_seq
            elif isinstance(op, _Record):
                parts += (*_frame(op.seq, op.item, op.meta, op.payload), op.meta, op.payload)
                size += _RECORD.size + len(op.meta) + len(op.payload)
                top = op.seq
            elif isinstance(op, _Switch):
                write()
                if fd >= 0:
                    os.close(fd)
                fd = op.fd
                continue
            else:
                write()
                if fd >= 0:
                    os.fsync(fd)
                dir_fd = os.open(op.directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
                continue
            if len(parts) >= _WRITEV_PARTS or size >= _WRITEV_BYTES:
                write()
        write()
        return fd


def _write_all(fd: int, parts: list[bytes | bytearray]) -> None:
    views = [memoryview(p) for p in parts if p]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
