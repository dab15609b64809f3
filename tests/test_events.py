"""Typed events: every kind round-trips through its wire record, the registry is sound,
real published events decode typed in a plain NATS client, and docs/events.md lists
exactly the kinds the classes define.

``python -m tests.test_events`` prints the table of kinds for docs/events.md.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import nats
import pytest
from anyio.abc import TaskStatus
from hypothesis import given
from hypothesis import strategies as st

from diaspora import codec, events
from diaspora.events import (
    ChildStarted,
    Event,
    Exited,
    Level,
    NodeExited,
    Terminated,
    UnknownEvent,
    decode_record,
    event_subject,
    event_types,
)
from diaspora.fabric import Fabric
from diaspora.supervision import ChildSpec, Supervisor, SupervisorSpec
from diaspora.testing import wait_until

DOCS = Path(__file__).resolve().parent.parent / "docs" / "events.md"
_RECORD_KEYS = ("category", "name", "kind", "time")


def _values(hint: Any) -> st.SearchStrategy[Any]:
    """Values of a field's type, as the codec carries them."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_values(arg) for arg in typing.get_args(hint)])
    if origin is Mapping:
        key, value = typing.get_args(hint)
        return st.dictionaries(_values(key), _values(value), max_size=4)
    scalars: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        str: st.text(max_size=12),
        int: st.integers(-(2**63), 2**63 - 1),
        float: st.floats(allow_nan=False),
        bool: st.booleans(),
    }
    return scalars[hint]


@st.composite
def any_event(draw: st.DrawFn) -> Event:
    """An event of any registered type, every field drawn (defaults too)."""
    cls = draw(st.sampled_from(event_types()))
    hints = typing.get_type_hints(cls)
    values = {f.name: draw(_values(hints[f.name])) for f in dataclasses.fields(cls)}
    return cls(**values)


@given(any_event(), st.floats(0, 2e9))
def test_every_event_type_round_trips_through_its_record_and_the_codec(
    event: Event, at: float
) -> None:
    record = event.record(at=at)
    assert decode_record(record) == event
    wire = codec.decode(codec.encode(record))
    assert wire == record
    assert decode_record(wire) == event
    assert event.subject_name == event_subject(wire["category"], wire["name"], wire["kind"])
    assert event.level in Level


def test_each_type_has_its_own_subject_kind_and_no_field_shadows_the_record() -> None:
    types_ = event_types()
    assert len({(t.category, t.kind) for t in types_}) == len(types_)
    for t in types_:
        assert t.category, t
        assert t.kind, t
        assert t.__name__ in events.__all__
        names = {f.name for f in dataclasses.fields(t)}
        assert not names & {"category", "kind", "time"}, t  # they would clobber the record
    assert {t.category for t in types_} == {
        "actor",
        "supervision",
        "scaleout",
        "fabric",
        "trigger",
        "view",
        "link",
        "migration",  # issue 14: live migration
        "pool",  # issue 14: pools, declared
        "monitor",  # issue 15: anomaly prediction
        "storage",  # issue 16: resilient storage
    }


def test_a_kind_this_reader_does_not_know_is_kept_whole() -> None:
    record = {"category": "predict", "name": "p1", "kind": "alert", "time": 1.0, "score": 0.9}
    event = decode_record(record)
    assert event == UnknownEvent(
        name="p1", of_category="predict", of_kind="alert", data={"score": 0.9}
    )
    assert event.record(at=1.0) == record
    assert event.subject_name == "diaspora.events.predict.p1.alert"
    # a known kind missing a field is kept whole too, rather than failing the reader
    assert isinstance(
        decode_record({"category": "actor", "name": "a", "kind": "lag"}), UnknownEvent
    )


def test_the_level_of_an_exit_depends_on_whether_it_was_normal() -> None:
    assert Exited(name="r", child="a", reason="normal", normal=True).level is Level.INFO
    assert Exited(name="r", child="a", reason="Boom()", normal=False).level is Level.WARNING
    crashed = NodeExited(name="r", child="n", incarnation=0, pid=1, returncode=-9, reason="crashed")
    assert crashed.level is Level.WARNING
    assert dataclasses.replace(crashed, reason="shutdown", returncode=0).level is Level.INFO


class _Idle:
    def __init__(self) -> None:
        self._stop = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()


@pytest.mark.anyio
async def test_a_plain_nats_subscriber_decodes_a_supervisors_published_events_typed(
    fabric: Fabric,
) -> None:
    got: list[tuple[str, Event]] = []

    async def collect(msg: Any) -> None:
        got.append((msg.subject, decode_record(codec.decode(msg.data))))

    plain = await nats.connect(fabric.urls[0])  # a client that knows nothing of diaspora
    try:
        await plain.subscribe("diaspora.events.>", cb=collect)
        await plain.flush()
        sup = Supervisor(SupervisorSpec([ChildSpec("a", _Idle)]), name="root", on_event=fabric)
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            sup.request_stop()

        def both() -> bool:  # events of other kinds (the fabric's own) may come in between
            return len([g for g in got if g[0].startswith("diaspora.events.supervision.")]) >= 2

        await wait_until(both, timeout=15, what="both events")
    finally:
        await plain.close()
    assert [g for g in got if g[0].startswith("diaspora.events.supervision.")] == [
        (
            "diaspora.events.supervision.root.started",
            ChildStarted(name="root", child="a", incarnation=0),
        ),
        (
            "diaspora.events.supervision.root.terminated",
            Terminated(name="root", child="a", reason="shutdown"),
        ),
    ]


# -- the table in docs/events.md ------------------------------------------------------

_TABLE = re.compile(r"<!-- kinds: .*? -->\n(.*?)<!-- /kinds -->\n", re.S)


def _level(cls: type[Event]) -> str:
    if cls.level is not Event.level:  # the type decides from its fields
        return f"{cls.default_level.value}; by fields"
    return cls.default_level.value


def _fields(cls: type[Event]) -> str:
    shown = []
    for f in dataclasses.fields(cls):
        if f.name == "name":
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        typed = f"{f.name}: {f.type}".replace("|", "\\|")  # a bare | would end the cell
        shown.append(f"`{typed}" + (f" = {default!r}`" if has_default else "`"))
    return ", ".join(shown) or "—"


def kinds_table() -> str:
    """The markdown tables of every kind, one per category, as docs/events.md has them."""
    out: list[str] = []
    for category in dict.fromkeys(t.category for t in event_types()):
        out += [f"**`{category}`**", "", "| type | kind | level | fields | what |"]
        out += ["|---|---|---|---|---|"]
        for cls in (t for t in event_types() if t.category == category):
            what = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "`")
            what = re.sub(r":class:`~?([\w.]+)`", r"`\1`", what)
            row = [f"`{cls.__name__}`", f"`{cls.kind}`", _level(cls), _fields(cls), what]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def test_the_docs_table_lists_exactly_the_kinds_the_classes_define() -> None:
    found = _TABLE.search(DOCS.read_text())
    assert found is not None, f"{DOCS}: no <!-- kinds: ... --> ... <!-- /kinds --> block"
    assert found.group(1) == kinds_table(), (
        f"{DOCS} is out of date: replace its kinds block with `python -m tests.test_events`"
    )


if __name__ == "__main__":
    print(kinds_table(), end="")
