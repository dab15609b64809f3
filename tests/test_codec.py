"""Codec: round trips over nested values and arrays, zero-copy decode, corrupt input."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from diaspora.codec import ARRAY_EXT, FRAME_EXT, EncodeError, decode, encode
from diaspora.errors import DecodeError

DTYPES = (
    npst.boolean_dtypes()
    | npst.integer_dtypes(endianness="?")
    | npst.unsigned_integer_dtypes(endianness="?")
    | npst.floating_dtypes(endianness="?", sizes=(16, 32, 64))
    | npst.complex_number_dtypes(endianness="?")
)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    """Arrays of every numeric/bool dtype and shape, sometimes non-contiguous views."""
    dtype = draw(DTYPES)
    shape = draw(npst.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    arr = draw(npst.arrays(dtype, shape))
    view = draw(st.sampled_from(["as_is", "transpose", "stride"]))
    if view == "transpose" and arr.ndim >= 2:
        arr = arr.T
    elif view == "stride" and arr.ndim >= 1:
        arr = arr[::2]
    return arr


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=40)
)

VALUES = st.recursive(
    SCALARS | arrays(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), children, max_size=5)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Structural equality: tuples come back as lists, NaN equals NaN, arrays by value."""
    if isinstance(a, np.ndarray):
        return (
            isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


@given(VALUES)
@settings(max_examples=400, deadline=None)
def test_roundtrip_nested_values_and_arrays(value: Any) -> None:
    assert same(value, decode(encode(value)))


@given(arrays())
@settings(max_examples=300, deadline=None)
def test_decoded_arrays_are_views_of_the_received_buffer(arr: np.ndarray[Any, Any]) -> None:
    payload = encode({"a": arr})
    out = decode(payload)["a"]
    assert same(arr, out)
    if arr.nbytes:
        # no copy: the array's memory lies inside the payload bytes object
        assert np.shares_memory(out, np.frombuffer(payload, dtype=np.uint8))
        assert not out.flags.writeable


def test_plain_values_stay_plain_msgpack() -> None:
    payload = encode({"x": 1, "y": [1.5, "a"]})
    assert msgpack.unpackb(payload) == {"x": 1, "y": [1.5, "a"]}


def test_frame_is_one_valid_msgpack_ext_value() -> None:
    payload = encode({"frame": np.ones((4, 4), np.float32)})
    ext = msgpack.unpackb(payload)
    assert isinstance(ext, msgpack.ExtType)
    assert ext.code == FRAME_EXT
    body_len = int.from_bytes(ext.data[:4], "big")
    body = msgpack.unpackb(ext.data[4 : 4 + body_len])
    assert body["frame"].code == ARRAY_EXT
    assert msgpack.unpackb(body["frame"].data) == ["<f4", [4, 4], 0, 64]


def test_numpy_scalars_become_python_scalars() -> None:
    out = decode(encode([np.int16(3), np.float32(0.5), np.bool_(True), np.complex64(1j)]))
    assert out[:3] == [3, 0.5, True]
    assert isinstance(out[3], np.ndarray)
    assert out[3].shape == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": [1, {"b": {1, 2}}]}, r"cannot encode set at \$\.a\[1\]\.b"),
        ({"a": 2**70}, r"int 1180591620717411303424 at \$\.a: integers must fit in 64 bits"),
        ({"x y": [np.array(["s"])]}, r"dtype <U1 at \$\['x y'\]\[0\]"),
        ([object()], r"cannot encode object at \$\[0\]"),
    ],
)
def test_unsupported_values_name_type_and_path(value: Any, expected: str) -> None:
    with pytest.raises(EncodeError, match=expected) as info:
        encode(value)
    assert isinstance(info.value, TypeError)


@given(st.binary(max_size=200))
@settings(max_examples=1000)
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


@given(VALUES, st.data())
@settings(max_examples=300, deadline=None)
def test_truncated_payloads_raise_decode_error(value: Any, data: st.DataObject) -> None:
    payload = encode(value)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(DecodeError):
        decode(payload[:cut])


@given(VALUES, st.data())
@settings(max_examples=300, deadline=None)
def test_corrupted_payloads_never_crash_the_caller(value: Any, data: st.DataObject) -> None:
    payload = bytearray(encode(value))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(DecodeError):
        decode(bytes(payload))


def test_numpy_is_imported_only_when_an_array_is_met() -> None:
    """A process node's child starts without numpy; decoding an array brings it in."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import diaspora.workflow._host\n"
        "from diaspora import codec\n"
        "assert 'numpy' not in sys.modules, 'numpy imported at start'\n"
        "assert codec.decode(codec.encode({'x': [1, 2.5]})) == {'x': [1, 2.5]}\n"
        "assert 'numpy' not in sys.modules, 'numpy imported by a plain payload'\n"
        f"frame = bytes.fromhex({encode({'a': np.arange(3)}).hex()!r})\n"
        "assert codec.decode(frame)['a'].tolist() == [0, 1, 2]\n"
        "assert 'numpy' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
