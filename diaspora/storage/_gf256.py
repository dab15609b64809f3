"""Reed-Solomon over GF(256) in numpy alone: the codec used when pyeclib is not installed.

The code is systematic: fragments ``0..k-1`` are the chunk itself, cut in
``k`` equal shards (the last one zero-padded), and fragments ``k..k+m-1``
are parities, row ``i`` of a Cauchy matrix ``C[i][j] = 1 / (x_i ^ y_j)``
times the data shards (``y_j = j``, ``x_i = k + i``). Every ``k x k``
sub-matrix of ``[I; C]`` is invertible, so any ``k`` of the ``k + m``
fragments give the chunk back. Multiplying a shard by a constant is one
table lookup per byte (a 256-entry row of the 64 KiB product table), adding
is XOR. Fragments carry no header: the manifest keeps each one's index,
length and checksum, so they are not interchangeable with pyeclib's (which
carry an 80-byte header of their own).

>>> rs = GF256Codec(2, 1)
>>> frags = rs.encode(b"hello world")
>>> rs.decode({1: frags[1], 2: frags[2]}, 11)
b'hello world'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["GF256Codec", "gf_inverse", "gf_mul"]

_POLY: Final = 0x11D

Bytes = npt.NDArray[np.uint8]


def _tables() -> tuple[list[int], list[int], Bytes]:
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= _POLY
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    a = np.arange(256)
    la = np.array(log)[a]
    table = np.array(exp, dtype=np.uint8)[(la[:, None] + la[None, :]) % 255]
    table[0, :] = 0
    table[:, 0] = 0
    return exp, log, table.astype(np.uint8)


_EXP, _LOG, _MUL = _tables()


def gf_mul(a: int, b: int) -> int:
    """The product of two elements of GF(256)."""
    return int(_MUL[a, b])


def gf_inverse(a: int) -> int:
    """The multiplicative inverse of a non-zero element of GF(256)."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(256)")
    return _EXP[255 - _LOG[a]]


def _invert(matrix: list[list[int]]) -> list[list[int]]:
    """The inverse of a square matrix over GF(256), by Gauss-Jordan elimination."""
    n = len(matrix)
    rows = [row[:] + [1 if i == j else 0 for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col])
        rows[col], rows[pivot] = rows[pivot], rows[col]
        scale = gf_inverse(rows[col][col])
        rows[col] = [gf_mul(v, scale) for v in rows[col]]
        for r in range(n):
            if r != col and (factor := rows[r][col]):
                rows[r] = [v ^ gf_mul(factor, p) for v, p in zip(rows[r], rows[col], strict=True)]
    return [row[n:] for row in rows]


class GF256Codec:
    """A systematic ``k + m`` Reed-Solomon code (Cauchy parities), numpy only.

    ``encode`` cuts a chunk into ``k`` data and ``m`` parity fragments;
    ``decode`` takes any ``k`` of them (a mapping index → bytes) and the
    chunk's size; ``reconstruct`` rebuilds chosen fragments.
    """

    name: Final = "gf256_cauchy"

    def __init__(self, k: int, m: int) -> None:
        if not (k >= 1 and m >= 0 and k + m <= 255):
            raise ValueError(f"rs:{k}+{m}: need k >= 1, m >= 0 and k + m <= 255")
        self.k, self.m = k, m
        self._rows = [[1 if i == j else 0 for j in range(k)] for i in range(k)] + [
            [gf_inverse((k + i) ^ j) for j in range(k)] for i in range(m)
        ]

    def shard_len(self, size: int) -> int:
        """The length of each fragment of a chunk of ``size`` bytes."""
        return max(1, -(-size // self.k))

    def _apply(self, rows: Sequence[Sequence[int]], shards: Sequence[Bytes]) -> list[bytes]:
        out: list[bytes] = []
        for row in rows:
            acc = np.zeros_like(shards[0])
            for coeff, shard in zip(row, shards, strict=True):
                if coeff == 1:
                    acc ^= shard
                elif coeff:
                    acc ^= np.take(_MUL[coeff], shard)
            out.append(acc.tobytes())
        return out

    def encode(self, chunk: bytes) -> list[bytes]:
        """The ``k + m`` fragments of ``chunk``, data fragments first."""
        length = self.shard_len(len(chunk))
        padded = np.zeros(self.k * length, dtype=np.uint8)
        padded[: len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        shards = [padded[j * length : (j + 1) * length] for j in range(self.k)]
        return [s.tobytes() for s in shards] + self._apply(self._rows[self.k :], shards)

    def _data_shards(self, frags: Mapping[int, bytes]) -> list[Bytes]:
        if len(frags) < self.k:
            raise ValueError(f"rs:{self.k}+{self.m}: {len(frags)} fragments, need {self.k}")
        chosen = sorted(frags)[: self.k]
        if chosen == list(range(self.k)):
            return [np.frombuffer(frags[j], dtype=np.uint8) for j in chosen]
        inverse = _invert([self._rows[j] for j in chosen])
        shards = [np.frombuffer(frags[j], dtype=np.uint8) for j in chosen]
        return [np.frombuffer(b, dtype=np.uint8) for b in self._apply(inverse, shards)]

    def decode(self, frags: Mapping[int, bytes], size: int) -> bytes:
        """The chunk of ``size`` bytes from any ``k`` of its fragments."""
        return b"".join(s.tobytes() for s in self._data_shards(frags))[:size]

    def reconstruct(self, frags: Mapping[int, bytes], wanted: Sequence[int]) -> dict[int, bytes]:
        """Fragments ``wanted`` rebuilt from any ``k`` others."""
        shards = self._data_shards(frags)
        rebuilt = self._apply([self._rows[j] for j in wanted], shards)
        return dict(zip(wanted, rebuilt, strict=True))
