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
