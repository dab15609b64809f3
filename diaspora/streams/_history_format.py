"""The on-disk format of a producer's history: segment files of CRC-checked records.

A history directory holds segment files ``<16 digits>.seg``, an ``index``
file (msgpack ``{"version": 1, "low_seq": n}``: records below ``low_seq``
are evicted) and a ``lock`` file. One record is, little-endian::

    u32 magic 0xD1A50001 | u32 crc32 of the rest | u64 record seq | u64 item
    | u32 meta_len | u32 payload_len | meta: msgpack [subject, headers] | payload

Here are the framing (:func:`_frame`), the parsing of a record read back
(:func:`_parse`) and of its parts, a memory-mapped view of a segment for
scanning it.

>>> head = b"".join(_frame(1, 7, b"meta", b"payload"))
>>> len(head) == _RECORD.size
True
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import msgpack

__all__: list[str] = []

_MAGIC: Final = 0xD1A50001
_RECORD = struct.Struct("<IIQQII")  # magic, crc, seq, item, meta_len, payload_len
_TAIL = struct.Struct("<QQII")  # the part of the header the crc covers
_SEGMENT_SUFFIX: Final = ".seg"
_INDEX: Final = "index"
_LOCK: Final = "lock"
_MAX_META: Final = 16 * 1024 * 1024


def _frame(seq: int, item: int, meta: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """The record header (magic, crc, tail) for ``meta`` and ``payload``."""
    tail = _TAIL.pack(seq, item, len(meta), len(payload))
    crc = zlib.crc32(payload, zlib.crc32(meta, zlib.crc32(tail)))
    return struct.pack("<II", _MAGIC, crc), tail


@contextlib.contextmanager
def _mapped(f: BinaryIO, size: int) -> Iterator[memoryview]:
    """The first ``size`` bytes of ``f``, memory-mapped (pages are read only where touched)."""
    if size == 0:
        yield memoryview(b"")
        return
    with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
        yield view


def _parse_head(head: bytes, offset: int, size: int) -> tuple[int, int, int, int, int] | str:
    """(crc, seq, item, meta_len, payload_len) of the record at ``offset``, or what is wrong."""
    if len(head) < _RECORD.size:
        return "torn header"
    magic, crc, seq, item, meta_len, payload_len = _RECORD.unpack(head)
    if magic != _MAGIC:
        return "bad magic"
    if meta_len > _MAX_META:
        return "bad meta length"
    if offset + _RECORD.size + meta_len + payload_len > size:
        return "torn record"
    return crc, seq, item, meta_len, payload_len


def _parse_meta(raw: bytes | memoryview) -> tuple[str, dict[str, str]] | str:
    try:
        subject, headers = msgpack.unpackb(raw, raw=False)
    except Exception:
        return "undecodable meta"
    if not isinstance(subject, str) or not isinstance(headers, dict):
        return "malformed meta"
    return subject, headers


def _parse(head: bytes, payload: bytes) -> tuple[int, str, dict[str, str]] | str:
    """One record read back as its head (header and meta) and payload, CRC checked.

    Returns (seq, subject, headers), or what is wrong.
    """
    parsed = _parse_head(head[: _RECORD.size], 0, len(head) + len(payload))
    if isinstance(parsed, str):
        return parsed
    crc, seq, _, meta_len, payload_len = parsed
    if _RECORD.size + meta_len != len(head) or payload_len != len(payload):
        return "wrong record length"
    if zlib.crc32(payload, zlib.crc32(memoryview(head)[8:])) != crc:
        return "crc mismatch"
    meta = _parse_meta(head[_RECORD.size :])
    if isinstance(meta, str):
        return meta
    return seq, meta[0], meta[1]


@dataclass(frozen=True, slots=True)
class ScannedRecord:
    """One intact record found by :class:`SegmentScan` (where it is, what it holds)."""

    offset: int
    length: int
    #: bytes from the record's start to its payload
    head: int
    seq: int
    item: int
    subject: str
    headers: dict[str, str]
    payload_len: int


class SegmentScan:
    """The intact records of a segment file, in order, up to the first torn or corrupt one.

    After iterating, ``valid`` is the size of the intact prefix and
    ``reason`` says why the rest is not (``None``: the whole file is intact).
    CRCs are checked only with ``check_crc`` (the last segment, which a
    crash may have torn).
    """

    def __init__(self, path: Path, size: int, *, check_crc: bool) -> None:
        self.path = path
        self.size = size
        self.check_crc = check_crc
        self.valid = 0
        self.reason: str | None = None

    def __iter__(self) -> Iterator[ScannedRecord]:
        size, offset = self.size, 0
        with open(self.path, "rb") as f, _mapped(f, size) as data:
            unpack = _RECORD.unpack_from
            while offset < size:
                if offset + _RECORD.size > size:
                    self.reason = "torn header"
                    break
                magic, crc, seq, item, meta_len, payload_len = unpack(data, offset)
                head = offset + _RECORD.size
                start = head + meta_len
                end = start + payload_len
                if magic != _MAGIC:
                    self.reason = "bad magic"
                    break
                if meta_len > _MAX_META or end > size:
                    self.reason = "torn record"
                    break
                if self.check_crc and zlib.crc32(data[offset + 8 : end]) != crc:
                    self.reason = "crc mismatch"
                    break
                meta = _parse_meta(data[head:start])
                if isinstance(meta, str):
                    self.reason = meta
                    break
                subject, headers = meta
                yield ScannedRecord(
                    offset, end - offset, start - offset, seq, item, subject, headers, payload_len
                )
                offset = end
        self.valid = offset
