"""Erasure codes: any k of the k+m fragments give the chunk back, for every backend that loads."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diaspora.errors import StorageError
from diaspora.storage._codec import BACKENDS, available_backends, codec
from diaspora.storage._gf256 import GF256Codec, gf_inverse, gf_mul

LOADED = available_backends()
SHAPES = [(1, 0), (1, 1), (2, 1), (3, 2), (4, 2), (6, 3)]


def test_the_numpy_fallback_always_loads_and_pyeclib_isa_l_loads_when_installed() -> None:
    assert "gf256_cauchy" in LOADED
    try:
        import pyeclib  # noqa: F401
    except ImportError:
        pytest.skip("pyeclib not installed (pip install 'diaspora[storage]')")
    assert LOADED[0] == "isa_l_rs_vand"
    assert "liberasurecode_rs_vand" in LOADED
    assert codec(4, 2).name == "isa_l_rs_vand"  # "auto" prefers ISA-L


@pytest.mark.parametrize("backend", LOADED)
@settings(max_examples=12, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), shape=st.sampled_from(SHAPES))
def test_any_k_of_k_plus_m_fragments_decode_on_every_subset(
    backend: str, data: bytes, shape: tuple[int, int]
) -> None:
    k, m = shape
    if backend != "gf256_cauchy" and m == 0:
        return  # pyeclib needs parity
    rs = codec(k, m, backend)
    frags = rs.encode(data)
    assert len(frags) == k + m
    for subset in itertools.combinations(range(k + m), k):
        assert rs.decode({j: frags[j] for j in subset}, len(data)) == data
    lost = sorted({0, k + m - 1})[:m]  # a data and a parity fragment, at most m
    kept = {j: f for j, f in enumerate(frags) if j not in lost}
    assert rs.reconstruct(kept, lost) == {j: frags[j] for j in lost}


@pytest.mark.parametrize("backend", LOADED)
def test_chunk_sized_data_round_trips(backend: str) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4: shards are padded
    rs = codec(4, 2, backend)
    frags = rs.encode(data)
    assert rs.decode({2: frags[2], 3: frags[3], 4: frags[4], 5: frags[5]}, len(data)) == data


def test_gf256_field_axioms() -> None:
    for a in range(1, 256):
        assert gf_mul(a, gf_inverse(a)) == 1
        assert gf_mul(a, 1) == a
        assert gf_mul(a, 0) == 0
    assert gf_mul(3, 7) == gf_mul(7, 3)
    with pytest.raises(ZeroDivisionError):
        gf_inverse(0)


def test_too_few_fragments_and_bad_shapes_are_refused() -> None:
    rs = GF256Codec(3, 2)
    frags = rs.encode(b"x" * 10)
    with pytest.raises(ValueError, match="2 fragments, need 3"):
        rs.decode({0: frags[0], 4: frags[4]}, 10)
    with pytest.raises(ValueError, match="k >= 1"):
        GF256Codec(0, 2)
    with pytest.raises(StorageError, match="unknown"):
        codec(2, 1, "zfec")


def test_the_formats_are_separate() -> None:
    """pyeclib fragments carry their own 80-byte header, the numpy ones none: different bytes."""
    if "isa_l_rs_vand" not in LOADED:
        pytest.skip("pyeclib not installed")
    data = b"q" * 4000
    ours, theirs = codec(4, 2, "gf256_cauchy").encode(data), codec(4, 2).encode(data)
    assert len(theirs[0]) == len(ours[0]) + 80
    assert set(BACKENDS) >= set(LOADED)
