"""Cutting what is put into chunks: bytes, a binary file, or an (async) iterable of bytes."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import IO, TypeAlias

from diaspora.errors import StorageError

__all__ = ["Source", "chunked"]

Source: TypeAlias = (
    bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes] | AsyncIterable[bytes]
)


async def _pieces(data: Source) -> AsyncIterator[bytes]:
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield bytes(data)
    elif hasattr(data, "read"):
        while piece := data.read(1 << 20):
            yield bytes(piece)
    elif isinstance(data, AsyncIterable):
        async for piece in data:
            yield bytes(piece)
    elif isinstance(data, Iterable):
        for piece in data:
            yield bytes(piece)
    else:
        raise StorageError(f"put: {type(data).__name__} is not bytes, a file or an iterable")


async def chunked(data: Source, size: int) -> AsyncIterator[bytes]:
    """Pieces of exactly ``size`` bytes (the last one shorter; none for empty data)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])
        return
    buffer = bytearray()
    async for piece in _pieces(data):
        buffer += piece
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
