"""A producer's bounded history of what it emitted: memory first, then local disk.

A :class:`HistoryBuffer` maps ``(subject, item number)`` to ``(payload,
headers)``. Item numbers are the producer's own, one sequence per subject,
added in increasing order. The buffer keeps the **newest** items within two
bounds, ``max_items`` and ``max_bytes`` (payload bytes plus header
characters), evicting the oldest first across all subjects. ``memory_bytes``
bounds what is kept in RAM; older items are read back from disk.

>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     with HistoryBuffer(d, max_items=3) as history:
...         for n in range(1, 6):
...             _ = history.add("edge1.patterns", n, b"frame%d" % n, {"Diaspora-Item": str(n)})
...     with HistoryBuffer(d, max_items=3) as reopened:   # survives a restart
...         print([x.item if isinstance(x, HistoryItem) else x
...                for x in reopened.range("edge1.patterns", 1, 5)])
[Gap(subject='edge1.patterns', first=1, last=2), 3, 4, 5]

**On disk** (when a directory is given) every item is appended to the
current segment file ``<16 digits>.seg``; segments roll at ``segment_bytes``
and are deleted once every item in them is evicted. A small ``index`` file
(rewritten on flush, segment roll and close) records the oldest live record,
so that evicted items stay evicted across a reopen, and a ``lock`` file
(``flock``) keeps a second buffer out of the directory. The record format is in
:mod:`diaspora.streams._history_format`, the writer thread in
:mod:`diaspora.streams._history_writer`.

Opening a directory scans every record (a few µs each; the last segment's
with CRC checks); a torn or corrupt record — a crash mid-write — is cut off
with everything after it in its segment and logged as ``history_truncated``,
never raised. Reads from disk check the CRC; a record that fails is reported
missing. Bounds are applied again on open, so a directory can be reopened
with other bounds.

**Durability.** ``add`` never writes or fsyncs on the caller's thread: it
queues the record for the buffer's writer thread, which hands queued records
to the operating system in batches (one ``writev`` for many small items), as
fast as the disk takes them. So after a SIGKILL of the producer every item
the writer had written survives (the OS has it) — normally everything added
up to a millisecond or so before the kill, and never more than
``write_queue_bytes`` of the newest items are lost: ``add`` blocks when the
writer falls that far behind. :meth:`~HistoryBuffer.flush` waits until every
item added so far is written (then it survives a SIGKILL);
``flush(sync=True)`` also fsyncs, for surviving a power loss; ``close``
writes everything but does not fsync. An item's RAM copy is dropped only
after it is written, so RAM may briefly exceed ``memory_bytes`` by the
writer's backlog. The writer is a daemon thread: a process that exits
without ``close`` (or ``flush``) loses what was still queued, as in a kill.

A buffer is used from one thread (the event loop's); only its own writer
thread runs beside it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import msgpack

from diaspora.errors import ConfigError, HistoryError
from diaspora.log import get_logger
from diaspora.streams._history_format import _RECORD, SegmentScan, _parse
from diaspora.streams._history_index import _Entry, _Subject
from diaspora.streams._history_segments import _Segment, _Segments
from diaspora.streams._history_values import (
    Gap,
    HistoryItem,
    HistorySpec,
    HistoryStats,
    entry_size,
)
from diaspora.streams._history_writer import _Record, _Switch, _Sync, _Writer

__all__ = [
    "Gap",
    "HistoryBuffer",
    "HistoryError",
    "HistoryItem",
    "HistorySpec",
    "HistoryStats",
    "entry_size",
]

_MAX_U64: Final = 2**64 - 1
_SMALL_RECORD: Final = 16 * 1024  # framed on the caller's thread below this payload size
_SPLIT_READ: Final = 64 * 1024  # records from this size are read in two parts


def _check_bound(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"history.{name}: {value!r} must be an integer >= {minimum}")
    return value


class HistoryBuffer:
    """Bounded ``(subject, item) -> (payload, headers)`` history of one producer.

    ``directory=None`` keeps the history in memory only (its byte bound is
    then ``min(max_bytes, memory_bytes)``); with a directory the history
    survives restarts (see the module docstring for the layout and the
    durability). Use it as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        max_items: int = 1_000_000,
        max_bytes: int = 1024**3,
        memory_bytes: int = 64 * 1024**2,
        segment_bytes: int = 64 * 1024**2,
        write_queue_bytes: int = 32 * 1024**2,
        name: str = "history",
    ) -> None:
        self.max_items = _check_bound("max_items", max_items)
        self.max_bytes = _check_bound("max_bytes", max_bytes)
        self.memory_bytes = _check_bound("memory_bytes", memory_bytes, 0)
        self.segment_bytes = _check_bound("segment_bytes", segment_bytes, 4096)
        self.write_queue_bytes = _check_bound("write_queue_bytes", write_queue_bytes)
        self.name = name
        self.directory = Path(directory) if directory is not None else None
        self._log = get_logger(history=name)
        if self.directory is None:
            self._byte_limit = min(self.max_bytes, self.memory_bytes)
            self._memory_limit = self._byte_limit
        else:
            self._byte_limit = self.max_bytes
            self._memory_limit = self.memory_bytes

        self._order: deque[_Entry] = deque()  # retained, oldest first
        self._memory: deque[_Entry] = deque()  # those with a RAM copy, oldest first
        self._subjects: dict[str, _Subject] = {}
        self._last_seen: dict[str, int] = {}
        self._bytes = 0
        self._mem_bytes = 0
        self._next_seq = 1
        self._closed = False
        self._counters = dict.fromkeys(
            ("added", "evicted", "duplicates", "oversize", "truncated_bytes", "corrupt"), 0
        )
        self._disk: _Segments | None = None  # with a directory
        self._writer: _Writer | None = None
        self._low_seq = 0  # records below this seq are evicted
        self._index_low_seq = 0
        if self.directory is not None:
            self._open_directory(self.directory)

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Write everything queued, write the index, release the directory (idempotent)."""
        if self._closed:
            return
        self._closed = True
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                try:
                    writer.drain()
                    assert self._disk is not None
                    current = self._disk.current
                    if current is not None and current.size == 0:
                        self._disk.drop(current)
                    self._write_index()
                except (HistoryError, OSError) as exc:
                    self._log.error("history_close_failed", reason=str(exc))
                finally:
                    writer.close()
        finally:
            if self._disk is not None:
                self._disk.release()
            self._order.clear()
            self._memory.clear()
            self._subjects.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise HistoryError(f"history {self.name!r} is closed; open a new HistoryBuffer")

    # -- writing -------------------------------------------------------------------------

    def add(
        self,
        subject: str,
        item: int,
        payload: bytes | bytearray | memoryview,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Record item ``item`` of ``subject``; ``False`` if it was not kept.

        An item numbered at or below the newest one of its subject (a
        re-emission after a restart) is ignored, and so is an item larger
        than the byte bound on its own (logged as ``history_item_too_large``).
        Takes microseconds; it blocks only while the disk is
        ``write_queue_bytes`` behind.
        """
        self._check_open()
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= _MAX_U64:
            raise ValueError(
                f"history {self.name!r}: item {item!r} of {subject!r} is not an integer >= 0"
            )
        last = self._last_seen.get(subject)
        if last is not None and item <= last:
            self._counters["duplicates"] += 1
            return False
        hdrs = dict(headers) if headers else {}
        data = payload if isinstance(payload, bytes) else bytes(payload)
        size = entry_size(data, hdrs)
        if size > self._byte_limit:
            self._last_seen[subject] = item
            self._counters["oversize"] += 1
            self._log.warning(
                "history_item_too_large",
                subject=subject,
                item=item,
                size=size,
                max_bytes=self._byte_limit,
            )
            return False
        entry = _Entry(self._next_seq, subject, item, size)
        entry.payload, entry.headers = data, hdrs
        if self._writer is not None:
            self._append_record(entry, self._writer)
        self._last_seen[subject] = item
        self._next_seq += 1
        self._order.append(entry)
        self._memory.append(entry)
        index = self._subjects.get(subject)
        if index is None:
            index = self._subjects[subject] = _Subject()
        index.append(entry)
        self._bytes += size
        self._mem_bytes += size
        self._counters["added"] += 1
        self._enforce_bounds()
        return True

    def flush(self, *, sync: bool = False) -> None:
        """Wait until every item added so far is written to the OS; ``sync`` also fsyncs.

        Blocks for at most the writer's backlog (``write_queue_bytes``).
        """
        self._check_open()
        writer = self._writer
        if writer is None:
            return
        if sync:
            assert self.directory is not None
            writer.submit(_Sync(self.directory))
        writer.drain()
        if self._low_seq != self._index_low_seq:
            self._write_index()
        self._enforce_bounds()

    def _append_record(self, entry: _Entry, writer: _Writer) -> None:
        assert entry.payload is not None
        assert self._disk is not None
        if self._disk.current is None:
            self._new_segment(writer)
        current = self._disk.current
        assert current is not None
        meta: bytes = msgpack.packb([entry.subject, entry.headers], use_bin_type=True)
        entry.segment = current.id
        entry.offset = current.size
        entry.head = _RECORD.size + len(meta)
        entry.length = entry.head + len(entry.payload)
        if len(entry.payload) < _SMALL_RECORD:
            writer.submit_small(entry.seq, entry.item, meta, entry.payload)
        else:
            writer.submit(_Record(entry.seq, entry.item, meta, entry.payload), entry.length)
        current.size += entry.length
        if current.size >= self.segment_bytes:
            self._new_segment(writer)

    def _new_segment(self, writer: _Writer) -> None:
        assert self._disk is not None
        segment, fd = self._disk.create()
        writer.submit(_Switch(fd))
        self._disk.hold(segment)
        if self._low_seq != self._index_low_seq:
            self._write_index()

    # -- bounds --------------------------------------------------------------------------

    def _enforce_bounds(self) -> None:
        order, memory = self._order, self._memory
        while order and (len(order) > self.max_items or self._bytes > self._byte_limit):
            entry = order.popleft()
            index = self._subjects[entry.subject]
            index.popleft()
            if not index:
                del self._subjects[entry.subject]
            self._bytes -= entry.size
            if memory and memory[0] is entry:
                memory.popleft()
                self._mem_bytes -= entry.size
            entry.payload = entry.headers = None
            self._low_seq = entry.seq + 1
            self._counters["evicted"] += 1
        written = self._writer.written_seq if self._writer is not None else 0
        while memory and self._mem_bytes > self._memory_limit and memory[0].seq <= written:
            entry = memory.popleft()  # it is on disk: only its RAM copy goes
            self._mem_bytes -= entry.size
            entry.payload = entry.headers = None
        if self._disk is not None:
            self._disk.drop_before(order[0].segment if order else None)

    # -- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._order)

    @property
    def subjects(self) -> list[str]:
        """Subjects with at least one item held."""
        return list(self._subjects)

    def first_item(self, subject: str) -> int | None:
        """The oldest item number held for ``subject`` (``None`` if none)."""
        index = self._subjects.get(subject)
        return index.first() if index else None

    def last_item(self, subject: str) -> int | None:
        """The newest item number held for ``subject`` (``None`` if none)."""
        index = self._subjects.get(subject)
        return index.last() if index else None

    def get(self, subject: str, item: int) -> HistoryItem | None:
        """Item ``item`` of ``subject``, or ``None`` if the history does not hold it."""
        self._check_open()
        index = self._subjects.get(subject)
        entry = index.at_or_after(item) if index else None
        if entry is None or entry.item != item:
            return None
        return self._load(entry)

    def range(self, subject: str, first: int, last: int) -> Iterator[HistoryItem | Gap]:
        """Items ``first..last`` of ``subject`` in order, with a :class:`Gap` for each hole.

        Safe to interleave with :meth:`add`: items evicted meanwhile become gaps.
        """
        self._check_open()
        expected = first
        gap_from: int | None = None
        while expected <= last and not self._closed:
            index = self._subjects.get(subject)
            entry = index.at_or_after(expected) if index else None
            if entry is None or entry.item > last:
                break
            found = self._load(entry)
            if found is None:  # corrupt on disk: part of a gap
                if gap_from is None:
                    gap_from = expected
                expected = entry.item + 1
                continue
            if gap_from is None and entry.item > expected:
                gap_from = expected
            if gap_from is not None:
                yield Gap(subject, gap_from, entry.item - 1)
                gap_from = None
            expected = entry.item + 1
            yield found
        if gap_from is None and expected <= last:
            gap_from = expected
        if gap_from is not None:
            yield Gap(subject, gap_from, last)

    def _load(self, entry: _Entry) -> HistoryItem | None:
        payload, headers = entry.payload, entry.headers
        if payload is not None and headers is not None:
            return HistoryItem(entry.subject, entry.item, payload, dict(headers))
        segment = self._disk.by_id.get(entry.segment) if self._disk is not None else None
        if segment is None:
            return None
        if entry.length < _SPLIT_READ:
            data = segment.read(entry.offset, entry.length)
            head, payload = data[: entry.head], data[entry.head :]
        else:  # two reads spare a copy of a large payload
            head = segment.read(entry.offset, entry.head)
            payload = segment.read(entry.offset + entry.head, entry.length - entry.head)
        record = _parse(head, payload)
        if isinstance(record, str) or record[0] != entry.seq:
            self._counters["corrupt"] += 1
            self._log.warning(
                "history_record_corrupt",
                segment=segment.path.name,
                offset=entry.offset,
                subject=entry.subject,
                item=entry.item,
                reason=record if isinstance(record, str) else "wrong record",
            )
            return None
        _, subject, headers = record
        return HistoryItem(subject, entry.item, payload, headers)

    @property
    def stats(self) -> HistoryStats:
        """Sizes and counters (``disk_bytes`` includes evicted records not yet deleted)."""
        return HistoryStats(
            items=len(self._order),
            bytes=self._bytes,
            memory_items=len(self._memory),
            memory_bytes=self._mem_bytes,
            disk_bytes=self._disk.size if self._disk is not None else 0,
            segments=len(self._disk) if self._disk is not None else 0,
            subjects=len(self._subjects),
            **self._counters,
        )

    # -- the directory -------------------------------------------------------------------

    def _open_directory(self, directory: Path) -> None:
        disk = _Segments(directory, self.name, self._log)
        disk.lock()
        self._disk = disk
        try:
            self._recover(disk)
        except BaseException:
            self._closed = True
            disk.release()
            raise
        self._writer = _Writer(self.name, self.write_queue_bytes)

    def _recover(self, disk: _Segments) -> None:
        self._low_seq = self._index_low_seq = disk.read_index()
        numbers = disk.numbers()
        last_seq = self._low_seq - 1
        for i, number in enumerate(numbers):
            segment = disk.reopen(number)
            last_seq = self._scan(segment, last_seq, check_crc=i == len(numbers) - 1)
        self._next_seq = max(last_seq + 1, self._low_seq, 1)
        self._enforce_bounds()
        self._log.info(
            "history_opened",
            directory=str(disk.directory),
            items=len(self._order),
            segments=len(disk),
            truncated_bytes=self._counters["truncated_bytes"],
        )

    def _write_index(self) -> None:
        assert self._disk is not None
        self._disk.write_index(self._low_seq)
        self._index_low_seq = self._low_seq

    def _scan(self, segment: _Segment, last_seq: int, *, check_crc: bool) -> int:
        """Index one segment's records; cut it at the first torn or corrupt record."""
        scan = SegmentScan(segment.path, segment.size, check_crc=check_crc)
        for record in scan:
            if record.seq > last_seq:
                last_seq = record.seq
                if record.seq >= self._low_seq:
                    size = entry_size(b"", record.headers) + record.payload_len
                    entry = _Entry(record.seq, record.subject, record.item, size)
                    entry.segment, entry.offset = segment.id, record.offset
                    entry.length, entry.head = record.length, record.head
                    self._index_entry(entry)
        if scan.reason is not None:
            dropped = segment.size - scan.valid
            os.truncate(segment.path, scan.valid)
            segment.size = scan.valid
            self._counters["truncated_bytes"] += dropped
            self._log.warning(
                "history_truncated",
                segment=segment.path.name,
                offset=scan.valid,
                dropped_bytes=dropped,
                reason=scan.reason,
            )
        return last_seq

    def _index_entry(self, entry: _Entry) -> None:
        last = self._last_seen.get(entry.subject)
        if (last is not None and entry.item <= last) or entry.size > self._byte_limit:
            return
        self._last_seen[entry.subject] = entry.item
        self._order.append(entry)
        index = self._subjects.get(entry.subject)
        if index is None:
            index = self._subjects[entry.subject] = _Subject()
        index.append(entry)
        self._bytes += entry.size
