"""``alert.keep_for``: a warning lasts that long after its condition stops holding, across a
checkpoint too."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diaspora.errors import ConfigError
from diaspora.predict import AlertRule, Condition, MonitorSpec, Track

RULE = AlertRule(Condition("value", ">", 5.0), keep_for_s=2.0)
SPEC = MonitorSpec("hot", "xs", alert=RULE)


def transitions(track: Track, xs: list[float], start: int = 0) -> list[str | None]:
    return [s.transition for t, x in enumerate(xs, start) for s in track.add(float(t), x)]


def test_a_warning_resolves_only_after_keep_for_seconds_without_its_condition() -> None:
    got = transitions(Track(SPEC), [9, 1, 9, 1, 1, 1, 1])
    assert got == ["warning", None, None, None, None, "resolved", None]
    at_once = MonitorSpec("hot", "xs", alert=AlertRule(RULE.when))  # keep_for 0
    assert transitions(Track(at_once), [9, 1]) == ["warning", "resolved"]
    table = {"name": "hot", "on": "xs", "alert": {"when": "value > 5", "keep_for": 2}}
    assert MonitorSpec.from_mapping(table).alert.keep_for_s == 2.0
    table["alert"]["keep_for"] = -1
    with pytest.raises(ConfigError, match=r"alert\.keep_for: -1 must be seconds >= 0"):
        MonitorSpec.from_mapping(table, where="flow.toml: monitors[0] (hot)")


@given(st.lists(st.sampled_from([1.0, 9.0]), min_size=2, max_size=40), st.data())
def test_a_track_restored_mid_keep_for_gives_the_same_transitions(
    xs: list[float], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(1, len(xs) - 1))
    whole = transitions(Track(SPEC), xs)
    first = Track(SPEC)
    head = transitions(first, xs[:cut])
    again = Track.from_state(SPEC, first.state())
    assert head + transitions(again, xs[cut:], start=cut) == whole
