"""Views under faults (issue 13's tests): the view actor in a process node SIGKILLed three
times and the server restarted once; a source healed from its producer's history; two
views over the same sources healed by the same history."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
import pytest

from diaspora import ActorRuntime, Message
from diaspora.errors import Stale
from diaspora.events import GroupDropped, MemorySink
from diaspora.fabric import Fabric, StreamLimits
from diaspora.fabric._naming import stream_name
from diaspora.streams import QosSpec, declare_qos
from diaspora.testing import Injector, wait_until
from diaspora.testing._streams import read_stream
from diaspora.views import Source, View, ViewItem, copies_subject, view_runtime
from diaspora.workflow import load_config
from tests.actor.test_exactly_once import stream_count
from tests.views.ptycho import TILES, K, arrival_order, check_items, ptycho_view, publish_tiles
from tests.views.view_actors import ForgetfulPatterns, Patterns, Release

pytestmark = pytest.mark.anyio

WORKFLOW = """
[supervisor]
strategy = "one_for_one"
intensity = 10
period = 60.0

[views.ptycho_train]
output = "views.ptycho_train"
key = ["scan", "tile"]
within = 600.0
on_incomplete = "drop"
process = true

[views.ptycho_train.sources.diff]
subject = "ptycho.diff"
count = 16

[views.ptycho_train.sources.recon]
subject = "ptycho.recon"
count = 1
"""


async def test_a_view_in_a_process_node_killed_3_times_and_a_server_restart_emits_each_once(
    fabric: Fabric, workflow, injector: Injector, tmp_path: Path
) -> None:
    config = tmp_path / "views.toml"
    config.write_text(WORKFLOW)
    view = ptycho_view()
    tree = load_config(config)
    assert [c.id for c in tree.spec.children] == ["ptycho_train"]
    for subject in view.subjects:
        await fabric.ensure_stream(subject)
    order = arrival_order(TILES)
    cuts = [0, 1500, 3000, 4500, 6000, len(order)]
    seqs: dict[tuple[str, int, int], int] = {}
    async with workflow(config) as wf:
        injector.pids = wf
        for i, (start, stop) in enumerate(itertools.pairwise(cuts)):
            before = await stream_count(fabric, view.output)
            seqs |= await publish_tiles(fabric, order, start=start, stop=stop)

            async def grew(b: int = before) -> bool:
                return await stream_count(fabric, view.output) > b

            await wait_until(grew, timeout=60, what="view items after a chunk")
            if i < 3:
                await injector.kill_process("root.ptycho_train")  # SIGKILL, mid-stream
                await wf.wait_running()
            elif i == 3:
                await injector.restart_server()  # same port and store
                await fabric.wait_connected(timeout=20)

        async def all_items() -> bool:
            return await stream_count(fabric, view.output) >= TILES

        await wait_until(all_items, timeout=120, what=f"{TILES} view items")
        await wf.wait_running()
    assert injector.counts() == {"kill_process": 3, "restart_server": 1}
    await check_items(fabric, view, seqs, TILES)


HEAL_TILES = 40


def heal_view(name: str) -> View:
    return View(
        name,
        output=f"heal.{name}",
        key=("scan", "tile"),
        within=600.0,
        sources={"diff": Source("heal.diff", count=K), "recon": Source("heal.recon")},
    )


async def run_views(
    fabric: Fabric, views: list[View], count: int, sink: MemorySink, release: Release | None
) -> None:
    """Run the views until each has ``count`` items (``release`` patterns up to 10 tiles once
    they run), then stop them."""
    runtimes = [view_runtime(v, fabric, events=sink) for v in views]
    async with anyio.create_task_group() as tg:
        for runtime in runtimes:
            await tg.start(runtime.run)
        if release is not None:
            release.set(10 * K)
        for view in views:

            async def enough(subject: str = view.output) -> bool:
                return await stream_count(fabric, subject) >= count

            await wait_until(enough, timeout=60, what=f"{count} items of {view.name}")
        for runtime in runtimes:
            runtime.request_stop()


async def test_groups_whose_items_the_stream_lost_complete_from_the_producers_history(
    fabric: Fabric, tmp_path: Path
) -> None:
    """Two views over the same sources: the producer's history heals the lost stretch of
    the stream for both; no group is emitted incomplete, every item loads."""
    views = [heal_view("first"), heal_view("second")]
    await fabric.ensure_stream("heal.diff", StreamLimits(max_msgs=200))
    await fabric.ensure_stream("heal.recon")
    for tile in range(HEAL_TILES):
        await fabric.publish("heal.recon", {"scan": 1, "tile": tile, "pos": 0})
    release = Release(upto=0)
    sink = MemorySink()
    producer = ActorRuntime(
        Patterns, fabric, id="patterns", args={"release": release}, state_dir=tmp_path
    )
    async with anyio.create_task_group() as tg:
        await tg.start(producer.run)
        await run_views(fabric, views, 10, sink, release)  # tiles 0..9 complete, 10..39 open
        release.set(HEAL_TILES * K)

        async def stored_all() -> bool:
            return (await fabric.stream_bounds("heal.diff"))[1] >= HEAL_TILES * K

        await wait_until(stored_all, timeout=30, what="every pattern stored")
        first, _ = await fabric.stream_bounds("heal.diff")
        assert first > 10 * K + 1  # the views never saw patterns 161..540 in the stream
        await run_views(fabric, views, HEAL_TILES, sink, None)
        producer.request_stop()
    assert not [e for e in sink.events if isinstance(e, GroupDropped)]
    copies = stream_name(copies_subject(views[0]))
    for view in views:
        stored = await read_stream(fabric, view.output)
        assert sorted(m.data["key"][1] for m in stored) == list(range(HEAL_TILES))
        for m in stored:
            item = ViewItem.of(Message(m.data, m.subject, m.seq, m.headers))
            assert item.complete
            assert item.sizes == {"diff": K, "recon": 1}
            tile = item.key[1]
            flags = {r.flag for r in item.refs["diff"]}
            numbers = range(tile * K + 1, tile * K + K + 1)
            assert flags == {"pinned" if 10 * K < n < first else "" for n in numbers}, tile
            for ref in item.refs["diff"]:
                stream = stream_name(copies_subject(view)) if ref.flag else "heal_diff"
                assert ref.stream == stream
            if tile < 10:  # consumed in the stream, since dropped by its retention
                with pytest.raises(Stale):
                    await item.load(fabric)
                continue
            loaded = await item.load(fabric)
            positions = sorted(msg.data["pos"] for msg in loaded["diff"])  # type: ignore[union-attr]
            assert positions == list(range(K))
            assert {msg.data["tile"] for msg in loaded["diff"]} == {tile}  # type: ignore[union-attr]
    assert copies == "heal_first_copies"


async def test_items_nobody_has_are_reconstructed_stored_by_the_view_and_flagged(
    fabric: Fabric, tmp_path: Path
) -> None:
    view = View(
        "rebuilt",
        output="heal2.rebuilt",
        key=("scan", "tile"),
        within=600.0,
        sources={"diff": Source("heal2.diff", count=K), "recon": Source("heal2.recon")},
    )
    await declare_qos(
        fabric, "heal2.diff", QosSpec(reconstructor="tests.views.view_hooks:next_pattern")
    )
    await fabric.ensure_stream("heal2.diff", StreamLimits(max_msgs=200))
    await fabric.ensure_stream("heal2.recon")
    for tile in range(HEAL_TILES):
        await fabric.publish("heal2.recon", {"scan": 1, "tile": tile, "pos": 0})
    release = Release(upto=0)
    sink = MemorySink()
    args = {"release": release, "subject": "heal2.diff"}
    producer = ActorRuntime(
        ForgetfulPatterns, fabric, id="forgetful", args=args, state_dir=tmp_path
    )
    async with anyio.create_task_group() as tg:
        await tg.start(producer.run)
        await run_views(fabric, [view], 10, sink, release)
        release.set(HEAL_TILES * K)

        async def stored_all() -> bool:
            return (await fabric.stream_bounds("heal2.diff"))[1] >= HEAL_TILES * K

        await wait_until(stored_all, timeout=30, what="every pattern stored")
        first, _ = await fabric.stream_bounds("heal2.diff")
        await run_views(fabric, [view], HEAL_TILES, sink, None)
        producer.request_stop()
    assert not [e for e in sink.events if isinstance(e, GroupDropped)]
    stored = await read_stream(fabric, view.output)
    assert sorted(m.data["key"][1] for m in stored) == list(range(HEAL_TILES))
    rebuilt = 0
    for m in stored:
        item = ViewItem.of(m)
        tile = item.key[1]
        assert item.complete
        if tile < 10 or tile * K + 1 >= first:
            continue  # consumed before the loss, or still in the stream
        assert {r.flag for r in item.refs["diff"]} <= {"reconstructed", ""}
        loaded = await item.load(fabric)
        for ref, msg in zip(item.refs["diff"], loaded["diff"], strict=True):
            assert isinstance(msg, Message)
            assert msg.data["tile"] == tile
            if ref.flag == "reconstructed":
                assert msg.reconstructed
                assert msg.data["stand_in"] is True
                rebuilt += 1
    assert rebuilt > 0
