"""Erasure codes for chunks: pyeclib (ISA-L) when installed, numpy GF(256) otherwise.

:func:`codec` answers the codec of a ``rs:k+m`` layout by backend name. The
backend a chunk was written with is recorded in its manifest, and a chunk is
read with that backend only: pyeclib's fragments carry an 80-byte header of
their own and the numpy code's carry none, so the two formats are separate
(neither decodes the other's fragments).

``"auto"`` picks ``isa_l_rs_vand`` (SIMD, GB/s) if pyeclib loads it, then
``liberasurecode_rs_vand`` (pyeclib without ISA-L), then ``gf256_cauchy``
(numpy, a few hundred MiB/s). Install pyeclib with ``pip install
'diaspora[storage]'``.

>>> rs = codec(2, 1, "gf256_cauchy")
>>> frags = rs.encode(b"abc")
>>> rs.decode({0: frags[0], 2: frags[2]}, 3)
b'abc'
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from diaspora.errors import StorageError
from diaspora.storage._gf256 import GF256Codec

__all__ = ["BACKENDS", "Codec", "available_backends", "codec"]

#: Backends by preference; the first that loads is ``"auto"``'s choice.
BACKENDS: Final = ("isa_l_rs_vand", "liberasurecode_rs_vand", "gf256_cauchy")
_PYECLIB: Final = frozenset(BACKENDS[:2])


class Codec(Protocol):
    """A ``k + m`` erasure code over the bytes of one chunk."""

    @property
    def name(self) -> str: ...

    @property
    def k(self) -> int: ...

    @property
    def m(self) -> int: ...

    def encode(self, chunk: bytes) -> list[bytes]: ...

    def decode(self, frags: Mapping[int, bytes], size: int) -> bytes: ...

    def reconstruct(
        self, frags: Mapping[int, bytes], wanted: Sequence[int]
    ) -> dict[int, bytes]: ...


class PyECLibCodec:
    """pyeclib's ``ECDriver`` behind the :class:`Codec` shape (fragments self-describing)."""

    def __init__(self, k: int, m: int, backend: str) -> None:
        from pyeclib.ec_iface import ECDriver

        self.name, self.k, self.m = backend, k, m
        self._driver: Any = ECDriver(k=k, m=m, ec_type=backend)

    def encode(self, chunk: bytes) -> list[bytes]:
        return list(self._driver.encode(chunk))

    def decode(self, frags: Mapping[int, bytes], size: int) -> bytes:
        data = bytes(self._driver.decode(list(frags.values())))
        if len(data) != size:
            raise StorageError(
                f"{self.name} rs:{self.k}+{self.m}: decoded {len(data)} bytes, "
                f"the manifest says {size}"
            )
        return data

    def reconstruct(self, frags: Mapping[int, bytes], wanted: Sequence[int]) -> dict[int, bytes]:
        rebuilt = self._driver.reconstruct(list(frags.values()), list(wanted))
        return dict(zip(wanted, (bytes(f) for f in rebuilt), strict=True))


@functools.cache
def _loads(backend: str) -> bool:
    if backend not in _PYECLIB:
        return backend == "gf256_cauchy"
    try:
        PyECLibCodec(2, 1, backend).encode(b"probe")
    except Exception:  # not installed, or the backend library does not load here
        return False
    return True


def available_backends() -> list[str]:
    """The backends that load on this machine, by preference."""
    return [b for b in BACKENDS if _loads(b)]


@functools.cache
def codec(k: int, m: int, backend: str = "auto") -> Codec:
    """The ``rs:k+m`` codec of ``backend`` (``"auto"``: the best that loads).

    Raises :class:`~diaspora.errors.StorageError` for an unknown backend or
    one that does not load here (pyeclib missing: ``pip install 'diaspora[storage]'``).
    """
    if backend == "auto":
        backend = available_backends()[0]
    if backend not in BACKENDS:
        raise StorageError(f"codec {backend!r} is unknown; known: {', '.join(BACKENDS)}")
    if not _loads(backend):
        raise StorageError(
            f"codec {backend!r} does not load here (pyeclib missing or without that backend); "
            "chunks written with it need it to be read: pip install 'diaspora[storage]'"
        )
    if backend == "gf256_cauchy":
        return GF256Codec(k, m)
    return PyECLibCodec(k, m, backend)
