"""The pure grouper against a tiny model: the groups emitted depend only on each source's
own order, never on how the sources interleave (issue 13's property)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diaspora import codec
from diaspora.errors import ConfigError
from diaspora.views import Grouper, OnIncomplete, Source, View, view_from_table

#: One item of one source: (key, ref, time, fields).
Item = tuple[tuple[Any, ...], str, float, dict[str, Any]]


def model(view: View, streams: Mapping[str, list[Item]]) -> set[tuple[Any, ...]]:
    """The complete groups, computed from the definition: generation g of a key takes each
    counted source's g-th share of that key's items; a window takes the anchor's neighbours."""
    keys = {it[0] for items in streams.values() for it in items}
    out: set[tuple[Any, ...]] = set()
    watermark = {
        s: max((it[2] for it in items), default=float("-inf")) for s, items in streams.items()
    }
    anchor = view.anchor
    for key in keys:
        mine = {s: [it for it in items if it[0] == key] for s, items in streams.items()}
        for gen in range(1 + max(len(items) for items in mine.values())):
            refs: dict[str, tuple[str, ...]] = {}
            ok = True
            for name, source in view.sources.items():
                items = mine[name]
                if source.count is not None:
                    share = items[gen * source.count : (gen + 1) * source.count]
                    ok &= len(share) == source.count
                elif source.count_from is not None:
                    declarer, _, field = source.count_from.partition(".")
                    counts = [len(it[3][field]) for it in mine[declarer]]
                    if gen >= len(counts):
                        ok = False
                        continue
                    start = sum(counts[:gen])
                    share = items[start : start + counts[gen]]
                    ok &= len(share) == counts[gen]
                else:
                    continue
                refs[name] = tuple(it[1] for it in share)
            if ok and anchor is not None and any(s.window for s in view.sources.values()):
                anchor_items = mine[anchor]
                at = anchor_items[gen][2]
                for name, source in view.sources.items():
                    if source.window is not None:
                        ok &= watermark[name] > at + source.window
                        refs[name] = tuple(
                            it[1] for it in mine[name] if abs(it[2] - at) <= source.window
                        )
            if ok:  # each generation stands alone: a later one may complete first
                out.add((key, gen, tuple(sorted(refs.items()))))
    return out


def run(view: View, order: list[tuple[str, Item]], restore_at: set[int]) -> set[tuple[Any, ...]]:
    grouper = Grouper(view)
    out: set[tuple[Any, ...]] = set()
    for i, (source, (key, ref, time, fields)) in enumerate(order):
        if i in restore_at:  # a restart: the state goes through the codec, as in a checkpoint
            again = Grouper(view)
            again.restore(codec.decode(codec.encode(grouper.snapshot())))
            grouper = again
        for group in grouper.add(source, ref, key, fields, time):
            assert group.complete
            refs = tuple(sorted((s, tuple(r)) for s, r in group.refs.items()))
            assert (group.key, group.generation, refs) not in out, "a group completed twice"
            out.add((group.key, group.generation, refs))
    return out


@st.composite
def interleavings(
    draw: st.DrawFn, view: View
) -> tuple[dict[str, list[Item]], list[tuple[str, Item]]]:
    keys = st.sampled_from([("s", 0), ("s", 1), ("t", 0)])
    streams: dict[str, list[Item]] = {}
    for name in view.sources:
        n = draw(st.integers(0, 14))
        gaps = draw(st.lists(st.sampled_from([0.0, 0.25, 1.0]), min_size=n, max_size=n))
        time = draw(st.sampled_from([0.0, 0.5]))
        items: list[Item] = []
        for i in range(n):
            time += gaps[i]  # stored times never go back along a stream
            fields: dict[str, Any] = {}
            if any(s.count_from == f"{name}.positions" for s in view.sources.values()):
                fields = {"positions": list(range(draw(st.integers(0, 3))))}
            items.append((draw(keys), f"{name}{i}", time, fields))
        streams[name] = items
    cursors = {name: 0 for name in streams}
    order: list[tuple[str, Item]] = []
    while any(cursors[n] < len(streams[n]) for n in streams):
        live = sorted(n for n in streams if cursors[n] < len(streams[n]))
        name = draw(st.sampled_from(live))
        order.append((name, streams[name][cursors[name]]))
        cursors[name] += 1
    return streams, order


K_OF_A = View(
    "k_of_a",
    output="k.out",
    key=("scan", "tile"),
    within=1e9,
    sources={"diff": Source("diff", count=3), "recon": Source("recon")},
)
COUNT_FROM = View(
    "count_from",
    output="c.out",
    key=("scan", "tile"),
    within=1e9,
    sources={"diff": Source("diff", count_from="recon.positions"), "recon": Source("recon")},
)
ONE_TO_ONE = View(
    "one_to_one",
    output="o.out",
    key=("id",),
    within=1e9,
    sources={"a": Source("a"), "b": Source("b"), "c": Source("c", count=2)},
)
WINDOWED = View(
    "windowed",
    output="w.out",
    key=("scan", "tile"),
    within=1e9,
    sources={"frames": Source("frames", window=0.5), "trigger": Source("trigger")},
)


@pytest.mark.parametrize("view", [K_OF_A, COUNT_FROM, ONE_TO_ONE, WINDOWED], ids=lambda v: v.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_emitted_groups_equal_the_model_for_any_interleaving_and_restarts(
    view: View, data: st.DataObject
) -> None:
    streams, order = data.draw(interleavings(view))
    restore_at = set(data.draw(st.lists(st.integers(0, max(0, len(order) - 1)), max_size=3)))
    assert run(view, order, restore_at) == model(view, streams)


def test_items_after_a_completed_group_start_the_next_generation() -> None:
    g = Grouper(K_OF_A)
    key = ("s", 1)
    for i in range(5):
        assert g.add("diff", f"d{i}", key, {}, float(i)) == []
    (first,) = g.add("recon", "r0", key, {}, 5.0)
    assert (first.generation, first.refs) == (0, {"diff": ["d0", "d1", "d2"], "recon": ["r0"]})
    g.add("diff", "d5", key, {}, 6.0)
    (second,) = g.add("recon", "r1", key, {}, 7.0)
    assert (second.generation, second.refs["diff"]) == (1, ["d3", "d4", "d5"])


def test_expire_returns_groups_older_than_within_and_later_items_open_a_new_generation() -> None:
    view = View(
        "v",
        output="v.out",
        key=("k",),
        within=10.0,
        sources={"a": Source("a", count=2), "b": Source("b")},
        on_incomplete=OnIncomplete.EMIT_PARTIAL,
        min_counts={"a": 1},
    )
    g = Grouper(view)
    g.add("a", "a0", ("x",), {}, 0.0)
    g.add("a", "a1", ("y",), {}, 5.0)
    assert g.expire(9.0) == []
    (old,) = g.expire(10.5)
    assert (old.key, old.generation, old.complete) == (("x",), 0, False)
    assert old.refs == {"a": ["a0"], "b": []}
    g.add("a", "a2", ("x",), {}, 11.0)
    g.add("a", "a3", ("x",), {}, 11.5)
    (done,) = g.add("b", "b0", ("x",), {}, 12.0)
    assert (done.generation, done.refs["a"]) == (1, ["a2", "a3"])
    assert [grp.key for grp in g.expire(100.0)] == [("y",)]


def test_a_windowed_group_closes_when_its_source_passes_the_window() -> None:
    g = Grouper(WINDOWED)
    key = ("s", 0)
    g.add("frames", "f0", key, {}, 0.0)
    g.add("frames", "f1", key, {}, 0.4)
    assert g.add("trigger", "t0", key, {}, 0.5) == []
    g.add("frames", "f2", key, {}, 1.0)  # exactly at the edge: inside
    (done,) = g.add("frames", "f3", ("t", 0), {}, 1.2)  # another key's frame moves time on
    assert done.refs == {"frames": ["f0", "f1", "f2"], "trigger": ["t0"]}


def test_an_anchor_item_without_its_declared_count_is_refused_and_changes_nothing() -> None:
    g = Grouper(COUNT_FROM)
    before = g.snapshot()
    with pytest.raises(ValueError, match="positions"):
        g.add("recon", "r0", ("s", 0), {"other": 1}, 0.0)
    assert g.snapshot() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"within": 0}, "views.ptycho_train.within"),
        ({"sources": {"diff": {"subject": "ptycho.diff", "count": 0}}}, "sources.diff.count"),
        (
            {"sources": {"diff": {"subject": "d", "count_from": "nope.n"}}},
            "sources.diff.count_from",
        ),
        ({"on_incomplete": "sometimes"}, "views.ptycho_train.on_incomplete"),
        ({"on_incomplete": "reconstruct"}, "views.ptycho_train.reconstruct"),
        ({"pin_budget": "lots"}, "views.ptycho_train.pin_budget"),
        ({"sources": {"diff": {"subject": "d", "cnt": 1}}}, "sources.diff.cnt"),
        ({"colour": "blue"}, "views.ptycho_train.colour"),
    ],
)
def test_the_checker_names_the_file_and_field(change: dict[str, Any], field: str) -> None:
    table: dict[str, Any] = {
        "output": "views.ptycho_train",
        "key": ["scan", "tile"],
        "within": 60.0,
        "on_stale": "pin",
        "pin_budget": "2GiB",
        "sources": {
            "diff": {"subject": "ptycho.diff", "count": 16},
            "recon": {"subject": "ptycho.recon", "count": 1},
        },
    }
    assert view_from_table("ptycho_train", table).pin_budget == 2 << 30
    with pytest.raises(ConfigError, match=rf"^flow\.toml: .*{field}"):
        view_from_table("ptycho_train", {**table, **change}, where="flow.toml")


def test_python_and_toml_specs_are_the_same_object() -> None:
    table = {
        "output": "pairs",
        "key": ["id"],
        "within": 5,
        "sources": {"a": {"subject": "a"}, "b": {"subject": "b", "window": 1.0}},
    }
    python = View(
        "pairs",
        output="pairs",
        key=("id",),
        within=5.0,
        sources={"a": Source("a", count=1), "b": Source("b", window=1.0)},
    )
    assert view_from_table("pairs", table, where="flow.toml") == python
