"""QosSpec and OverloadPolicy: validation names the field path; config round trips."""

from __future__ import annotations

import dataclasses
import tomllib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaspora.errors import ConfigError
from diaspora.streams._qos import AggregateFn, OverloadPolicy, Policy, QosSpec
from diaspora.streams._reconstruct import LinearInterpolation

WHERE = 'ptycho.toml: streams."edge1.patterns".qos'

TOML = """
[streams."edge1.patterns".qos]
rate = 100
max_lag_items = 1000
max_lag_seconds = 5.0
max_latency = 0.5
stall_deadline = 2.0
policy = { kind = "aggregate", n = 10, fn = "max" }
reconstructor = "linear"
fill_stalls = true
"""


def test_a_toml_table_becomes_a_spec_with_enums() -> None:
    table = tomllib.loads(TOML)["streams"]["edge1.patterns"]["qos"]
    spec = QosSpec.from_mapping(table, WHERE)
    assert spec == QosSpec(
        rate=100.0,
        max_lag_items=1000,
        max_lag_seconds=5.0,
        max_latency=0.5,
        stall_deadline=2.0,
        policy=OverloadPolicy.aggregate(10, AggregateFn.MAX),
        reconstructor="linear",
        fill_stalls=True,
    )
    assert isinstance(spec.rate, float)
    assert spec.policy.kind is Policy.AGGREGATE
    assert isinstance(spec.make_reconstructor(), LinearInterpolation)


def test_defaults_watch_nothing_and_block() -> None:
    spec = QosSpec()
    assert spec.policy == OverloadPolicy.block()
    assert (spec.rate, spec.max_lag_items, spec.stall_deadline) == (None, None, None)
    assert spec.make_reconstructor() is None
    assert QosSpec.from_mapping({}) == spec
    assert spec.to_mapping() == {"policy": "block"}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("block", OverloadPolicy.block()),
        ("DROP_OLDEST", OverloadPolicy.drop_oldest()),
        ("scale_out", OverloadPolicy.scale_out()),
        ({"kind": "scale_out", "max_replicas": 8}, OverloadPolicy.scale_out(8)),
        ({"kind": "decimate", "k": 4}, OverloadPolicy.decimate(4)),
        ({"kind": "aggregate", "n": 3}, OverloadPolicy.aggregate(3, AggregateFn.MEAN)),
    ],
)
def test_policies_from_config(policy: object, expected: OverloadPolicy) -> None:
    assert QosSpec.from_mapping({"policy": policy}).policy == expected


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"rate": -1}, f"{WHERE}.rate: -1 must be a number > 0 (items/s)"),
        ({"rate": "fast"}, f"{WHERE}.rate: 'fast' must be a number > 0"),
        ({"rate": True}, f"{WHERE}.rate: True must be a number > 0"),
        ({"max_lag_items": 2.5}, f"{WHERE}.max_lag_items: 2.5 must be an integer > 0 (items)"),
        ({"max_lag_seconds": 0}, f"{WHERE}.max_lag_seconds: 0 must be a number > 0 (seconds)"),
        ({"max_latency": -0.1}, f"{WHERE}.max_latency: -0.1 must be a number > 0"),
        ({"rates": 10}, f"{WHERE}: unknown key 'rates' (known: rate, max_lag_items, "),
        ({"policy": "sometimes"}, f"{WHERE}.policy: 'sometimes' is not one of 'block', "),
        ({"policy": 4}, f"{WHERE}.policy: 4 is neither a policy name"),
        ({"policy": {"k": 4}}, f"{WHERE}.policy.kind: missing; one of 'block'"),
        ({"policy": {"kind": "decimate"}}, f"{WHERE}.policy.k: decimate needs k"),
        ({"policy": {"kind": "decimate", "k": 1}}, f"{WHERE}.policy.k: 1 must be an integer >= 2"),
        ({"policy": {"kind": "decimate", "k": 2, "n": 3}}, f"{WHERE}.policy.n: only aggregate"),
        ({"policy": {"kind": "block", "k": 2}}, f"{WHERE}.policy.k: only decimate takes k"),
        ({"policy": {"kind": "aggregate"}}, f"{WHERE}.policy.n: aggregate needs n"),
        (
            {"policy": {"kind": "aggregate", "n": 2, "fn": "median"}},
            f"{WHERE}.policy.fn: 'median' is not one of 'mean', 'sum'",
        ),
        (
            {"policy": {"kind": "scale_out", "max_replicas": 1}},
            f"{WHERE}.policy.max_replicas: 1 must be an integer >= 2",
        ),
        ({"policy": {"kind": "block", "every": 2}}, f"{WHERE}.policy: unknown key 'every'"),
        ({"reconstructor": "lineaar"}, f"{WHERE}.reconstructor: 'lineaar' is neither a built-in"),
        ({"reconstructor": ""}, f"{WHERE}.reconstructor: '' is not a reconstructor name"),
        ({"reconstructor_args": {"a": 1}}, f"{WHERE}.reconstructor_args: given without a"),
        (
            {"reconstructor": "linear", "reconstructor_args": [1]},
            f"{WHERE}.reconstructor_args: [1] is not a table",
        ),
        ({"fill_stalls": "yes"}, f"{WHERE}.fill_stalls: 'yes' is not true or false"),
        (
            {"fill_stalls": True, "rate": 10},
            f"{WHERE}.fill_stalls: true needs rate, stall_deadline and reconstructor "
            "(missing: stall_deadline, reconstructor)",
        ),
        (
            {"rate": 10, "stall_deadline": 0.05},
            f"{WHERE}.stall_deadline: 0.05s is not longer than the expected gap between items "
            "(1/rate = 0.1s)",
        ),
    ],
)
def test_invalid_config_names_the_field_path(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        QosSpec.from_mapping(table, WHERE)
    assert str(caught.value).startswith(message)


def test_invalid_python_values_name_the_field_too() -> None:
    with pytest.raises(ConfigError, match=r"^qos\.stall_deadline: -2 must be a number > 0"):
        QosSpec(stall_deadline=-2)
    with pytest.raises(ConfigError, match=r"^qos\.policy: 'block' is not an OverloadPolicy"):
        QosSpec(policy="block")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^qos\.policy\.kind: 'decimate' is not a Policy"):
        OverloadPolicy("decimate", k=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="not a table"):
        QosSpec.from_mapping([("rate", 1)], WHERE)  # type: ignore[arg-type]


def test_a_bad_reconstructor_import_fails_when_loaded_naming_the_field() -> None:
    spec = QosSpec.from_mapping({"reconstructor": "nowhere.mod:Thing"}, WHERE)
    with pytest.raises(ConfigError, match=rf"^{WHERE}\.reconstructor: 'nowhere\.mod:Thing'"):
        spec.make_reconstructor()


def test_specs_are_frozen_and_args_read_only() -> None:
    spec = QosSpec(reconstructor="zero_fill", reconstructor_args={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.rate = 3.0  # type: ignore[misc]
    args = {"factor": 2}
    spec = QosSpec(reconstructor="my.mod:Scale", reconstructor_args=args)
    args["factor"] = 3
    assert spec.reconstructor_args["factor"] == 2
    with pytest.raises(TypeError):
        spec.reconstructor_args["factor"] = 5  # type: ignore[index]
    assert hash(spec) == hash(QosSpec(reconstructor="my.mod:Scale", reconstructor_args={"f": 1}))


_policies = st.one_of(
    st.sampled_from(
        [OverloadPolicy.block(), OverloadPolicy.drop_oldest(), OverloadPolicy.scale_out()]
    ),
    st.integers(2, 100).map(OverloadPolicy.decimate),
    st.builds(OverloadPolicy.aggregate, st.integers(2, 100), st.sampled_from(AggregateFn)),
    st.integers(2, 64).map(OverloadPolicy.scale_out),
)
_seconds = st.none() | st.floats(0.001, 1e4)


@st.composite
def _specs(draw: st.DrawFn) -> QosSpec:
    rate = draw(st.none() | st.floats(0.01, 1e6))
    stall = draw(_seconds)
    if rate is not None and stall is not None and stall <= 1 / rate:
        stall = 2 / rate
    reconstructor = draw(st.none() | st.sampled_from(["linear", "hold_last", "pkg.mod:Cls"]))
    fill = draw(st.booleans()) and None not in (rate, stall, reconstructor)
    return QosSpec(
        rate=rate,
        max_lag_items=draw(st.none() | st.integers(1, 10**9)),
        max_lag_seconds=draw(_seconds),
        max_latency=draw(_seconds),
        stall_deadline=stall,
        policy=draw(_policies),
        reconstructor=reconstructor,
        reconstructor_args=draw(st.just({"x": 1})) if reconstructor == "pkg.mod:Cls" else {},
        fill_stalls=fill,
    )


@given(_specs())
def test_to_mapping_round_trips_through_from_mapping(spec: QosSpec) -> None:
    assert QosSpec.from_mapping(spec.to_mapping()) == spec
