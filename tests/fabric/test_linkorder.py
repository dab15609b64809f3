"""Link fault orders: every valid order survives JSON both ways, every bad field is named."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaspora.errors import ConfigError
from diaspora.fabric import LinkFault, LinkFaultKind, link_control_subject
from diaspora.fabric._linkorder import ALIASES

_FIELDS = ("seconds", "jitter", "rate", "duration")
_TAKES = {
    LinkFaultKind.LATENCY: {"seconds", "jitter", "duration"},
    LinkFaultKind.BANDWIDTH: {"rate", "duration"},
    LinkFaultKind.RESET: set(),
    LinkFaultKind.BLACKHOLE: {"seconds", "duration"},
    LinkFaultKind.CUT: {"seconds", "duration"},
    LinkFaultKind.HEAL: set(),
}
_seconds = st.floats(0, 3600, allow_nan=False)


@st.composite
def orders(draw: st.DrawFn) -> dict[str, object]:
    """A valid order as an operator writes it (aliases, either way of giving a duration)."""
    kind = draw(st.sampled_from(list(LinkFaultKind)))
    names = [kind.value]
    names += [alias for alias, target in ALIASES.items() if target is kind]
    order: dict[str, object] = {"fault": draw(st.sampled_from(names))}
    if kind is LinkFaultKind.LATENCY:
        order["seconds"] = draw(_seconds)
        if draw(st.booleans()):
            order["jitter"] = draw(_seconds)
    if kind is LinkFaultKind.BANDWIDTH:
        order["rate"] = draw(st.floats(1, 1e10) | st.integers(1, 10**9))
    if kind.lasting and draw(st.booleans()):
        how_long = draw(_seconds)
        key = "seconds" if kind in (LinkFaultKind.CUT, LinkFaultKind.BLACKHOLE) else "duration"
        order[draw(st.sampled_from([key, "duration"]))] = how_long
    return order


@given(orders())
def test_every_valid_order_round_trips_through_json(order: dict[str, object]) -> None:
    fault = LinkFault.from_json(json.dumps(order).encode())
    again = LinkFault.from_json(json.dumps(fault.as_order()).encode())
    assert again == fault
    assert fault.as_order()["fault"] == fault.kind.value  # the canonical name
    assert set(fault.as_order()) - {"fault"} <= _TAKES[fault.kind]


@given(orders(), st.sampled_from([*_FIELDS, "sconds", "ms", "rate_bps"]), _seconds)
def test_a_field_the_fault_does_not_take_is_refused_by_name(
    order: dict[str, object], name: str, value: float
) -> None:
    kind = LinkFault.from_order(order).kind
    if name in _TAKES[kind]:
        return
    with pytest.raises(ConfigError, match=f"field '{name}'"):
        LinkFault.from_order({**order, name: value})


@pytest.mark.parametrize("value", ["1", True, float("inf"), -1, [1]])
def test_a_bad_number_is_refused_naming_the_field(value: object) -> None:
    with pytest.raises(ConfigError, match="field 'duration' of cut_link"):
        LinkFault.from_order({"fault": "cut", "duration": value})


def test_the_control_subject_is_one_token_per_site() -> None:
    assert link_control_subject("edge") == "diaspora.control.link.edge.fault"
    assert link_control_subject("edge.a b") == "diaspora.control.link.edge_a_b.fault"
    with pytest.raises(ConfigError, match="site ''"):
        link_control_subject("")
