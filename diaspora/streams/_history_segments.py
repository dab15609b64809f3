"""The files of a history directory: its lock, its ``index`` and its segment files.

A ``_Segments`` owns a directory while a
:class:`~diaspora.streams.HistoryBuffer` has it open: the ``flock`` on
``lock`` that keeps a second buffer out, the ``<16 digits>.seg`` segment
files in id order (the newest one, ``current``, being written), and the
``index`` file recording the oldest live record. What a segment holds is
in :mod:`diaspora.streams._history_format`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

import msgpack

from diaspora.errors import HistoryError
from diaspora.log import FilteringBoundLogger
from diaspora.streams._history_format import _INDEX, _LOCK, _SEGMENT_SUFFIX

__all__: list[str] = []


class _Segment:
    __slots__ = ("id", "path", "rfd", "size")

    def __init__(self, id: int, path: Path, size: int) -> None:
        self.id = id
        self.path = path
        self.size = size  # including records still queued for the writer
        self.rfd = -1

    def read(self, offset: int, length: int) -> bytes:
        if self.rfd < 0:
            self.rfd = os.open(self.path, os.O_RDONLY)
        return os.pread(self.rfd, length, offset)

    def close(self) -> None:
        if self.rfd >= 0:
            os.close(self.rfd)
            self.rfd = -1


class _Segments:
    """The segment files of the history ``name`` in ``directory`` (call :meth:`lock` first)."""

    def __init__(self, directory: Path, name: str, log: FilteringBoundLogger) -> None:
        self.directory = directory
        self._name = name
        self._log = log
        self.by_id: dict[int, _Segment] = {}  # oldest first
        self.current: _Segment | None = None
        self._lock_fd = -1

    def __len__(self) -> int:
        return len(self.by_id)

    @property
    def size(self) -> int:
        """Bytes in every segment, evicted records not yet deleted included."""
        return sum(s.size for s in self.by_id.values())

    def lock(self) -> None:
        """Create the directory if need be and take its lock, or raise HistoryError."""
        directory = self.directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HistoryError(
                f"history {self._name!r}: cannot use directory {directory}: {exc}"
            ) from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise HistoryError(
                    f"history directory {directory} is in use by another HistoryBuffer "
                    "(in this or another process); give each producer its own directory"
                ) from exc
            raise HistoryError(f"history directory {directory}: cannot lock it: {exc}") from exc

    def release(self) -> None:
        """Close every segment and release the lock."""
        for segment in self.by_id.values():
            segment.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def numbers(self) -> list[int]:
        """The ids of the segment files in the directory, oldest first."""
        return sorted(
            int(p.stem)
            for p in self.directory.glob(f"*{_SEGMENT_SUFFIX}")
            if p.stem.isdigit() and len(p.stem) == 16
        )

    def reopen(self, number: int) -> _Segment:
        """Hold the existing segment file ``number``."""
        path = self.directory / f"{number:016d}{_SEGMENT_SUFFIX}"
        segment = _Segment(number, path, path.stat().st_size)
        self.by_id[number] = segment
        return segment

    def create(self) -> tuple[_Segment, int]:
        """A new, empty segment after the others and an fd to append to it (not held yet)."""
        number = max(self.by_id, default=0) + 1
        path = self.directory / f"{number:016d}{_SEGMENT_SUFFIX}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise HistoryError(
                f"history {self._name!r}: cannot create segment {path}: {exc}"
            ) from exc
        return _Segment(number, path, 0), fd

    def hold(self, segment: _Segment) -> None:
        """``segment`` (from :meth:`create`) is the one written from now on."""
        self.by_id[segment.id] = segment
        self.current = segment

    def drop(self, segment: _Segment) -> None:
        segment.close()
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        del self.by_id[segment.id]
        self._log.debug("history_segment_deleted", segment=segment.path.name)

    def drop_before(self, oldest: int | None) -> None:
        """Delete the segments older than segment ``oldest`` (every one but current if None)."""
        while self.by_id:
            segment = next(iter(self.by_id.values()))
            if segment is self.current or (oldest is not None and segment.id >= oldest):
                break
            self.drop(segment)

    def read_index(self) -> int:
        """The ``low_seq`` the index file records (0 if there is none, or it is damaged)."""
        path = self.directory / _INDEX
        try:
            low = msgpack.unpackb(path.read_bytes())["low_seq"]
            if isinstance(low, int) and low >= 0:
                return low
            raise ValueError(f"low_seq={low!r}")
        except FileNotFoundError:
            return 0
        except Exception as exc:  # a damaged index only lets evicted records back in
            self._log.warning("history_index_unreadable", path=str(path), reason=repr(exc))
            return 0

    def write_index(self, low_seq: int) -> None:
        tmp = self.directory / f"{_INDEX}.tmp"
        tmp.write_bytes(msgpack.packb({"version": 1, "low_seq": low_seq}))
        os.replace(tmp, self.directory / _INDEX)
