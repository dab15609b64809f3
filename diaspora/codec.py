"""Payload codec: msgpack values with numpy arrays carried out of band, decoded without copies.

A payload with no arrays is one plain msgpack value, so any msgpack library can
read and write it. A payload holding arrays is one msgpack *ext* value of type
``FRAME_EXT`` (2), always in the ``ext 32`` form, whose data is::

    u32 body_len (big-endian) | body (msgpack) | zero padding | array buffers

Inside ``body`` every array is an ext value of type ``ARRAY_EXT`` (1) whose data
is the msgpack list ``[dtype, shape, offset, nbytes]``: ``dtype`` is numpy's
``dtype.str`` (``"<f4"``), ``offset`` counts from the start of the buffer
region, which begins at the first multiple of 64 bytes, counted from the start
of the payload, after the body. Each buffer starts 64-byte aligned, so decoding
is ``np.frombuffer`` on the received bytes: the arrays are read-only views of
the payload (``.copy()`` one to modify it).

>>> import numpy as np
>>> frame = np.arange(6, dtype=np.float32).reshape(2, 3)
>>> out = decode(encode({"frame": frame, "meta": {"id": 7}}))
>>> out["meta"]["id"], out["frame"].shape, bool((out["frame"] == frame).all())
(7, (2, 3), True)

Numpy integer, float and bool scalars become Python scalars; numpy complex
scalars become 0-d arrays. Anything else msgpack cannot carry raises
:class:`EncodeError` (a ``TypeError``) naming the type and where it sits.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import msgpack

if TYPE_CHECKING:
    import numpy as np

from diaspora.errors import DecodeError, EncodeError

__all__ = ["ARRAY_EXT", "FRAME_EXT", "BytesLike", "EncodeError", "decode", "encode"]

BytesLike: TypeAlias = bytes | bytearray | memoryview

ARRAY_EXT: Final = 1
FRAME_EXT: Final = 2
_ALIGN: Final = 64
_EXT32: Final = 0xC9
_FRAME_HEAD: Final = 6  # 0xC9, u32 length, i8 type
_ARRAY_KINDS: Final = frozenset("biufc")
_PACK_BUF: Final = 4096
_U32 = struct.Struct(">I")


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class _Encoder:
    """One encode call: packs the body and collects array buffers on the side."""

    __slots__ = ("arrays", "buffers", "region_len")

    def __init__(self) -> None:
        self.arrays = 0
        self.buffers: list[tuple[int, memoryview]] = []
        self.region_len = 0

    def default(self, obj: object) -> object:
        # numpy is imported lazily: while nobody has imported it, nothing can be an array
        np = sys.modules.get("numpy")
        if np is None:
            raise TypeError(type(obj).__qualname__)
        if isinstance(obj, np.ndarray):
            return self._array(obj)
        if isinstance(obj, np.generic) and obj.dtype.kind in _ARRAY_KINDS:
            if obj.dtype.kind == "c":
                return self._array(np.asarray(obj))
            return obj.item()
        raise TypeError(type(obj).__qualname__)

    def _array(self, arr: np.ndarray[Any, Any]) -> msgpack.ExtType:
        import numpy as np

        if arr.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"numpy array of dtype {arr.dtype}")
        flat = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
        offset = self.region_len
        self.arrays += 1
        if flat.nbytes:
            self.buffers.append((offset, flat.data))
            self.region_len = _align(offset + flat.nbytes)
        header = msgpack.Packer(buf_size=_PACK_BUF).pack(
            [arr.dtype.str, list(arr.shape), offset, flat.nbytes]
        )
        return msgpack.ExtType(ARRAY_EXT, header)


def encode(obj: Any) -> bytes:
    """Encode ``obj`` (maps, lists, scalars, str, bytes, numpy arrays) to payload bytes.

    >>> decode(encode({"x": 1, "tags": ["a", "b"]}))
    {'x': 1, 'tags': ['a', 'b']}
    """
    enc = _Encoder()
    try:
        # a small initial buffer: msgpack's default (256 KiB) costs page faults on every call
        packer = msgpack.Packer(default=enc.default, use_bin_type=True, buf_size=_PACK_BUF)
        body: bytes = packer.pack(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _encode_error(obj, exc) from None
    if not enc.arrays:
        return body
    head = _FRAME_HEAD + 4 + len(body)
    region_start = _align(head)
    parts: list[BytesLike] = [b"", _U32.pack(len(body)), body, bytes(region_start - head)]
    at = 0
    for offset, buf in enc.buffers:
        if offset > at:
            parts.append(bytes(offset - at))
        parts.append(buf)
        at = offset + buf.nbytes
    total = region_start + at
    if total - _FRAME_HEAD > 0xFFFFFFFF:
        raise EncodeError(f"payload of {total} bytes exceeds the 4 GiB frame limit")
    parts[0] = bytes((_EXT32,)) + _U32.pack(total - _FRAME_HEAD) + bytes((FRAME_EXT,))
    return b"".join(parts)


def decode(data: BytesLike) -> Any:
    """Decode payload bytes made by :func:`encode` (or by any msgpack writer).

    Raises :class:`~diaspora.errors.DecodeError` on truncated or corrupt input;
    never anything else.

    >>> decode(b"\\xc1")
    Traceback (most recent call last):
    ...
    diaspora.errors.DecodeError: corrupt payload (1 bytes): ...
    """
    view = memoryview(data).cast("B")
    try:
        if len(view) >= _FRAME_HEAD and view[0] == _EXT32 and view[5] == FRAME_EXT:
            return _decode_frame(data, view)
        return msgpack.unpackb(view, raw=False, strict_map_key=False, ext_hook=_no_frame_ext)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types on corrupt input
        raise DecodeError(
            f"corrupt payload ({len(view)} bytes): {type(exc).__name__}: {exc}"
        ) from exc


def _no_frame_ext(code: int, data: bytes) -> Any:
    if code == ARRAY_EXT:
        raise DecodeError("array reference outside a frame (payload is not a Diaspora frame)")
    return msgpack.ExtType(code, data)


def _decode_frame(data: BytesLike, view: memoryview) -> Any:
    (length,) = _U32.unpack_from(view, 1)
    if length != len(view) - _FRAME_HEAD:
        raise DecodeError(f"frame says {length} bytes follow, payload has {len(view) - 6}")
    if len(view) < _FRAME_HEAD + 4:
        raise DecodeError("frame shorter than its header")
    (body_len,) = _U32.unpack_from(view, _FRAME_HEAD)
    body_start = _FRAME_HEAD + 4
    if body_start + body_len > len(view):
        raise DecodeError(f"frame body of {body_len} bytes runs past the payload end")
    region = _align(body_start + body_len)
    size = len(view)

    def array_hook(code: int, ext: bytes) -> Any:
        if code != ARRAY_EXT:
            return msgpack.ExtType(code, ext)
        import numpy as np

        dtype_str, shape, offset, nbytes = msgpack.unpackb(ext)
        dtype = np.dtype(dtype_str)
        if dtype.kind not in _ARRAY_KINDS:
            raise DecodeError(f"array dtype {dtype_str!r} is not numeric or bool")
        shape = tuple(int(d) for d in shape)
        count = math.prod(shape)
        if count * dtype.itemsize != nbytes or min(shape, default=0) < 0:
            raise DecodeError(f"array of {dtype_str}{list(shape)} cannot have {nbytes} bytes")
        if nbytes == 0:
            return np.empty(shape, dtype=dtype)
        start = region + int(offset)
        if offset < 0 or start + nbytes > size:
            raise DecodeError(f"array buffer [{start}, {start + nbytes}) outside the payload")
        return np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(shape)

    body = view[body_start : body_start + body_len]
    return msgpack.unpackb(body, raw=False, strict_map_key=False, ext_hook=array_hook)


_SCALARS = (str, bytes, bytearray, memoryview, int, float, bool, type(None))


def _is_array(obj: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _is_numpy_scalar(obj: Any) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.generic)


def _encode_error(obj: Any, exc: BaseException) -> EncodeError:
    """Find where in ``obj`` the value msgpack refused sits, and say so."""
    path, bad = _find_bad(obj, "$")
    if path is None:
        return EncodeError(f"cannot encode payload: {exc}")
    what = type(bad).__qualname__
    if _is_array(bad):
        what = f"numpy array of dtype {bad.dtype}"
        hint = "only bool and numeric dtypes are supported"
    elif isinstance(bad, int):
        what = f"int {bad}"
        hint = "integers must fit in 64 bits"
    else:
        hint = "convert it to a map, list, str, bytes, number or numpy array"
    return EncodeError(f"cannot encode {what} at {path}: {hint}")


def _find_bad(obj: Any, path: str) -> tuple[str | None, Any]:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, (str, int, bytes, float, bool)) and key is not None:
                return f"{path} (key {key!r})", key
            sub = (
                f"{path}.{key}"
                if isinstance(key, str) and key.isidentifier()
                else f"{path}[{key!r}]"
            )
            found = _find_bad(value, sub)
            if found[0] is not None:
                return found
        return None, None
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found = _find_bad(value, f"{path}[{i}]")
            if found[0] is not None:
                return found
        return None, None
    if isinstance(obj, bool) or obj is None:
        return None, None
    if isinstance(obj, int):
        return (None, None) if -(2**63) <= obj < 2**64 else (path, obj)
    if _is_array(obj) or _is_numpy_scalar(obj):
        return (None, None) if obj.dtype.kind in _ARRAY_KINDS else (path, obj)
    if isinstance(obj, _SCALARS):
        return None, None
    return path, obj
