"""Reconstructors: built-ins on scalars, arrays and maps, edges, fill_gap, load_reconstructor."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaspora import codec
from diaspora.errors import ConfigError
from diaspora.streams._reconstruct import (
    HoldLast,
    LinearInterpolation,
    ReconstructionError,
    Reconstructor,
    ZeroFill,
    fill_gap,
    load_reconstructor,
)

# -- HoldLast ------------------------------------------------------------------------------


def test_hold_last_repeats_before_or_at_the_start_after() -> None:
    assert fill_gap(HoldLast(), {"x": 1}, {"x": 9}, 3) == [{"x": 1}] * 3
    assert fill_gap(HoldLast(), None, "next", 2) == ["next", "next"]
    assert fill_gap(HoldLast(), "last", None, 1) == ["last"]


@pytest.mark.parametrize("reconstructor", [HoldLast(), LinearInterpolation(), ZeroFill()])
def test_a_gap_with_no_neighbour_cannot_be_filled(reconstructor: Reconstructor) -> None:
    with pytest.raises(ReconstructionError, match="no item observed on either side"):
        fill_gap(reconstructor, None, None, 2)
    with pytest.raises(ReconstructionError):
        reconstructor.reconstruct(None, None, 0, 1)
    assert fill_gap(reconstructor, None, None, 0) == []


# -- LinearInterpolation -------------------------------------------------------------------


def test_linear_interpolates_floats_at_equal_steps() -> None:
    assert fill_gap(LinearInterpolation(), 0.0, 1.0, 3) == [0.25, 0.5, 0.75]
    assert fill_gap(LinearInterpolation(), 1.0, 1.0, 2) == [1.0, 1.0]


def test_linear_rounds_integers_and_keeps_their_type() -> None:
    out = fill_gap(LinearInterpolation(), 10, 20, 3)
    assert out == [12, 15, 18]
    assert all(type(x) is int for x in out)
    assert fill_gap(LinearInterpolation(), 1, 2.0, 1) == [1.5]
    assert fill_gap(LinearInterpolation(), 0j, 2 + 2j, 1) == [1 + 1j]
    assert fill_gap(LinearInterpolation(), np.float32(0), np.float32(2), 1) == [1.0]


def test_linear_interpolates_arrays_keeping_shape_and_dtype() -> None:
    a = np.zeros((2, 3), np.float32)
    b = np.full((2, 3), 3.0, np.float32)
    [x, y] = fill_gap(LinearInterpolation(), a, b, 2)
    assert x.dtype == np.float32
    assert x.shape == (2, 3)
    np.testing.assert_allclose(x, 1.0)
    np.testing.assert_allclose(y, 2.0)
    [mid] = fill_gap(
        LinearInterpolation(), np.array([0, 255], np.uint8), np.array([255, 0], np.uint8), 1
    )
    assert mid.dtype == np.uint8
    assert mid.tolist() == [128, 128]  # no unsigned wrap-around, rounded half to even


def test_linear_works_on_read_only_decoded_arrays() -> None:
    before = codec.decode(codec.encode({"frame": np.zeros(4, np.float64)}))
    after = codec.decode(codec.encode({"frame": np.ones(4, np.float64)}))
    assert not before["frame"].flags.writeable
    [mid] = fill_gap(LinearInterpolation(), before, after, 1)
    np.testing.assert_allclose(mid["frame"], 0.5)
    codec.encode(mid)  # a stand-in is a payload like any other


def test_linear_holds_what_cannot_be_interpolated() -> None:
    shape_changed = fill_gap(LinearInterpolation(), np.zeros(2), np.ones(3), 1)[0]
    assert shape_changed.tolist() == [0.0, 0.0]
    mask = np.array([True, False])
    assert fill_gap(LinearInterpolation(), mask, ~mask, 1)[0] is mask
    assert fill_gap(LinearInterpolation(), "a", "b", 2) == ["a", "a"]
    assert fill_gap(LinearInterpolation(), b"a", b"b", 1) == [b"a"]
    assert fill_gap(LinearInterpolation(), True, False, 1) == [True]
    assert fill_gap(LinearInterpolation(), [1, 2], [3], 1) == [[1, 2]]
    assert fill_gap(LinearInterpolation(), 1, "x", 1) == [1]


def test_linear_interpolates_maps_field_by_field() -> None:
    before = {"t": 0.0, "n": 0, "name": "det1", "pos": [0.0, 10.0], "meta": {"gain": 1.0}}
    after = {"t": 4.0, "n": 4, "name": "det2", "pos": [4.0, 14.0], "meta": {"gain": 3.0}, "new": 1}
    assert fill_gap(LinearInterpolation(), before, after, 1) == [
        {"t": 2.0, "n": 2, "name": "det1", "pos": [2.0, 12.0], "meta": {"gain": 2.0}, "new": 1}
    ]
    assert fill_gap(LinearInterpolation(), {"x": 1, "only_before": "k"}, {"x": 3}, 1) == [
        {"x": 2, "only_before": "k"}
    ]
    assert fill_gap(LinearInterpolation(), (0, 2.0), (2, 4.0), 1) == [(1, 3.0)]


def test_linear_at_a_stream_edge_holds_the_observed_neighbour() -> None:
    assert fill_gap(LinearInterpolation(), None, {"x": 5.0}, 2) == [{"x": 5.0}] * 2
    assert fill_gap(LinearInterpolation(), {"x": 5.0}, None, 1) == [{"x": 5.0}]


@given(
    a=st.floats(-1e6, 1e6),
    b=st.floats(-1e6, 1e6),
    count=st.integers(1, 50),
)
def test_linear_values_are_monotone_and_between_the_neighbours(
    a: float, b: float, count: int
) -> None:
    out = fill_gap(LinearInterpolation(), a, b, count)
    assert len(out) == count
    lo, hi = min(a, b), max(a, b)
    assert all(lo - 1e-6 <= x <= hi + 1e-6 for x in out)
    steps = [y - x for x, y in zip([a, *out], [*out, b], strict=True)]
    assert all(s >= -1e-6 for s in steps) or all(s <= 1e-6 for s in steps)


# -- ZeroFill ------------------------------------------------------------------------------


def test_zero_fill_zeros_numbers_arrays_and_fields_like_the_neighbour() -> None:
    frame = np.ones((2, 2), np.uint16)
    [out] = fill_gap(
        ZeroFill(), {"frame": frame, "i": 7, "x": 1.5, "ok": True, "c": 1j, "id": "d1"}, None, 1
    )
    assert out["frame"].dtype == np.uint16
    assert out["frame"].shape == (2, 2)
    assert not out["frame"].any()
    assert out["frame"].flags.writeable
    assert (out["i"], out["x"], out["ok"], out["c"], out["id"]) == (0, 0.0, False, 0j, "d1")
    assert type(out["i"]) is int
    assert type(out["x"]) is float
    assert fill_gap(ZeroFill(), None, [1, (2.5, "s")], 2) == [[0, (0.0, "s")]] * 2
    assert fill_gap(ZeroFill(), np.float32(3), None, 1)[0].dtype == np.float32


# -- fill_gap ------------------------------------------------------------------------------


def test_fill_gap_passes_index_and_count() -> None:
    class Record:
        def reconstruct(self, before: Any, after: Any, index: int, count: int) -> Any:
            return (before, after, index, count)

    assert fill_gap(Record(), "b", "a", 2) == [("b", "a", 0, 2), ("b", "a", 1, 2)]


def test_fill_gap_wraps_a_failing_reconstructor() -> None:
    class Broken:
        def reconstruct(self, before: Any, after: Any, index: int, count: int) -> Any:
            raise KeyError("boom")

    with pytest.raises(ReconstructionError, match="failed on item 0 of a gap of 3: KeyError") as e:
        fill_gap(Broken(), 1, 2, 3)
    assert isinstance(e.value.__cause__, KeyError)
    with pytest.raises(ValueError, match="count=-1"):
        fill_gap(HoldLast(), 1, 2, -1)


# -- load_reconstructor --------------------------------------------------------------------

_MODULE = """
class Scale:
    def __init__(self, factor=1.0):
        self.factor = factor

    def reconstruct(self, before, after, index, count):
        return (before if before is not None else after) * self.factor


def midpoint(before, after, index, count, offset=0):
    return (before + after) / 2 + offset


shared = Scale(10)


class NotOne:
    pass
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "my_reconstructors.py").write_text(textwrap.dedent(_MODULE))
    (tmp_path / "broken_reconstructors.py").write_text("raise RuntimeError('half-written')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_reconstructors"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("hold_last", HoldLast),
        ("linear", LinearInterpolation),
        ("Linear_Interpolation", LinearInterpolation),
        ("zero_fill", ZeroFill),
        ("diaspora.streams._reconstruct:ZeroFill", ZeroFill),
        ("diaspora.streams._reconstruct.HoldLast", HoldLast),
    ],
)
def test_load_builtin_reconstructors(name: str, kind: type) -> None:
    assert isinstance(load_reconstructor(name), kind)


def test_load_user_classes_objects_and_functions(user_module: str) -> None:
    scale = load_reconstructor(f"{user_module}:Scale", factor=2)
    assert fill_gap(scale, 3, None, 1) == [6]
    assert fill_gap(load_reconstructor(f"{user_module}.Scale"), 3, None, 1) == [3.0]
    assert fill_gap(load_reconstructor(f"{user_module}:shared"), 3, None, 1) == [30]
    midpoint = load_reconstructor(f"{user_module}:midpoint", offset=1)
    assert fill_gap(midpoint, 2, 4, 2) == [4.0, 4.0]
    assert repr(midpoint) == "my_reconstructors:midpoint"


@pytest.mark.parametrize(
    ("path", "args", "message"),
    [
        ("", {}, "'' is not a reconstructor name or import path"),
        ("linearr", {}, "'linearr' is neither a built-in (hold_last, linear, "),
        ("no_such_pkg.mod:Thing", {}, "cannot import module 'no_such_pkg.mod'"),
        ("broken_reconstructors:X", {}, "importing 'broken_reconstructors' failed: RuntimeError"),
        ("my_reconstructors:Nope", {}, "module 'my_reconstructors' has no attribute 'Nope'"),
        ("my_reconstructors:NotOne", {}, "is the class NotOne, not a reconstructor"),
        ("math:pi", {}, "'math:pi' is a float, not a reconstructor"),
        ("my_reconstructors:Scale", {"fctor": 2}, "cannot construct Scale with {'fctor': 2}"),
        ("my_reconstructors:shared", {"factor": 2}, "is an object, it takes no arguments"),
    ],
)
def test_load_reconstructor_errors_say_what_and_where(
    user_module: str, path: str, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_reconstructor(path, where="ptycho.toml: streams.patterns.qos.reconstructor", **args)
    text = str(caught.value)
    assert text.startswith("ptycho.toml: streams.patterns.qos.reconstructor: ")
    assert message in text
