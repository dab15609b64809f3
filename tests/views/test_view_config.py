"""Views in workflow files, and the reconstruct policy against a real server."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from diaspora import Message
from diaspora.errors import ConfigError
from diaspora.events import GroupCompleted, MemorySink
from diaspora.fabric import Fabric
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from diaspora.views import OnIncomplete, Source, View, ViewActor, ViewItem, view_runtime
from diaspora.workflow import load_config
from diaspora.workflow._node import ProcessStart
from tests.actor.test_exactly_once import stream_count

pytestmark = pytest.mark.anyio

ISSUE_EXAMPLE = """
[supervisor]
strategy = "one_for_one"

[views.ptycho_train]
output = "views.ptycho_train"     # the metastream
key = ["scan", "tile"]            # group key, from payload fields or headers
within = 60.0                     # max age of an open group, seconds (required)
on_incomplete = "drop"            # drop | emit_partial (min counts) | reconstruct (user hook)
on_stale = "pin"                  # discard | pin (copy what is about to expire)
pin_budget = "2GiB"
[views.ptycho_train.sources.diff]
subject = "ptycho.diff"
count = 16                        # or count_from = "<field of another source's item>"
[views.ptycho_train.sources.recon]
subject = "ptycho.recon"
count = 1
"""


def test_the_issue_example_becomes_a_view_child_of_the_root(tmp_path: Path) -> None:
    path = tmp_path / "flow.toml"
    path.write_text(ISSUE_EXAMPLE + '\n[views.pairs]\noutput = "pairs"\nkey = ["id"]\n'
                    'within = 5\nprocess = true\n[views.pairs.sources.a]\nsubject = "a"\n'
                    '[views.pairs.sources.b]\nsubject = "b"\nwindow = 1.0\n')  # fmt: skip
    tree = load_config(path)
    train, pairs = tree.spec.children
    assert train.id == "ptycho_train"
    assert train.start.actor is ViewActor  # type: ignore[attr-defined]
    view = train.start.args["view"]  # type: ignore[attr-defined]
    assert view.sources["diff"].count == 16
    assert view.pin_budget == 2 << 30
    assert train.start.inputs == ("ptycho.diff", "ptycho.recon")  # type: ignore[attr-defined]
    assert isinstance(pairs.start, ProcessStart)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("count = 16 ", "count = 0  ", "views.ptycho_train.sources.diff.count"),
        ("within = 60.0", "within = -1", "views.ptycho_train.within"),
        ('pin_budget = "2GiB"', 'pin_budget = "lots"', "views.ptycho_train.pin_budget"),
        ('on_stale = "pin"', 'on_stale = "maybe"', "views.ptycho_train.on_stale"),
        ('subject = "ptycho.recon"', 'subject = "ptycho.recon"\nevery = 3', "recon.every"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    path = tmp_path / "flow.toml"
    assert old in ISSUE_EXAMPLE
    path.write_text(ISSUE_EXAMPLE.replace(old, new))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert field in str(caught.value)


async def test_reconstruct_completes_an_expired_group_with_the_hooks_stand_ins(
    fabric: Fabric,
) -> None:
    view = View(
        "rebuilt",
        output="rec.out",
        key=("k",),
        within=0.5,
        sources={"a": Source("rec.a", count=3), "b": Source("rec.b")},
        on_incomplete=OnIncomplete.RECONSTRUCT,
        reconstruct="tests.views.view_hooks:stand_ins",
    )
    await fabric.ensure_stream("rec.a")
    await fabric.ensure_stream("rec.b")
    await fabric.publish("rec.a", {"k": "x", "n": 1})
    await fabric.publish("rec.b", {"k": "x", "n": 2})
    sink = MemorySink()
    runtime = view_runtime(view, fabric, events=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)

        async def emitted() -> bool:
            return await stream_count(fabric, "rec.out") >= 1

        await wait_until(emitted, timeout=20, what="the reconstructed item")
        runtime.request_stop()
    (stored,) = await read_stream(fabric, "rec.out")
    item = ViewItem.of(Message(stored.data, stored.subject, stored.seq, stored.headers))
    assert item.complete
    assert [r.flag for r in item.refs["a"]] == ["", "reconstructed", "reconstructed"]
    loaded = await item.load(fabric)
    assert [m.data for m in loaded["a"]][1:] == [  # type: ignore[union-attr]
        {"key": ["x"], "stand_in": 0},
        {"key": ["x"], "stand_in": 1},
    ]
    assert all(m.reconstructed for m in loaded["a"][1:])  # type: ignore[union-attr]
    assert sum(e.reconstructed for e in sink.events if isinstance(e, GroupCompleted)) == 1
