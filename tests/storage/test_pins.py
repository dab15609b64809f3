"""View pins in resilient storage, by the view's ``pin_storage`` setting."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from diaspora.events import MemorySink, Pinned, Unpinned
from diaspora.fabric import Sites
from diaspora.storage import Policy, StorageSpec
from diaspora.testing import wait_until
from diaspora.views import PinnedMessage, Pins, Source, View, read_pin, view_runtime
from diaspora.views._keeper import PinKeeper
from tests.storage.rig import kill, specs

pytestmark = pytest.mark.anyio


def spec_of(sites: Sites) -> StorageSpec:
    return StorageSpec(
        {s.name: s.domain for s in sites},
        bucket="pins",
        policy=Policy(layout="rs:2+2", small_layout="rep:3", small=4096, lose=2),
        meta="hub",
    )


async def test_pinned_copies_live_in_storage_and_survive_lost_sites(tmp_path: Path) -> None:
    async with Sites(specs(), state_dir=tmp_path / "sites") as sites, sites.fabric("hub") as fabric:
        spec = spec_of(sites)
        pins = await Pins.open(fabric, "resilient", budget=1 << 20, storage=spec)
        small, large = (
            PinnedMessage("s", {}, b"x" * 10, 0.0),
            PinnedMessage("s", {}, b"y" * 9000, 0.0),
        )
        await pins.put("g", ("S", 1), small)
        await pins.put("g", ("S", 2), large)
        async with spec.open(fabric) as store:
            assert await store.names() == ["resilient/S.1", "resilient/S.2"]
            layouts = {
                str(c.layout) for n in await store.names() for c in (await store.stat(n)).chunks
            }
            assert layouts == {"rep:3", "rs:2+2"}
        again = await Pins.open(fabric, "resilient", budget=1 << 20)  # a restart, no setting
        assert again.held == pins.held == len(small.encode()) + len(large.encode())
        await kill(sites, "a")
        await kill(sites, "b")
        assert await read_pin(fabric, "resilient", "S", 1) == small
        assert await read_pin(fabric, "resilient", "S", 2) == large
        (event,) = await pins.release("g", "acked")
        assert isinstance(event, Unpinned)
        assert await read_pin(fabric, "resilient", "S", 2) is None
        async with spec.open(fabric) as store:
            assert await store.names() == []


async def test_a_view_pins_into_resilient_storage(tmp_path: Path) -> None:
    async with Sites(specs(), state_dir=tmp_path / "sites") as sites, sites.fabric("hub") as fabric:
        view = View(
            "stored",
            output="stored.out",
            key=("tile",),
            within=30.0,
            sources={"diff": Source("stored.diff", count=2), "recon": Source("stored.recon")},
            on_stale="pin",
            pin_margin=100,  # everything is about to expire: pinned at the first sweep
            pin_storage=spec_of(sites),
        )
        for subject in view.subjects:
            await fabric.ensure_stream(subject)
        await fabric.publish("stored.diff", {"tile": 0, "i": 0})  # an open group
        sink = MemorySink()
        runtime = view_runtime(view, fabric, events=sink)
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            keeper = next(s for s in runtime.stages if isinstance(s, PinKeeper))
            await wait_until(lambda: bool(sink.of(Pinned)), timeout=20, what="copies pinned")
            runtime.request_stop()
        assert keeper.pins is not None
        async with spec_of(sites).open(fabric) as store:
            (name,) = await store.names()
            assert name.startswith("stored/")
        await kill(sites, "c")
        stream, _, seq = name.removeprefix("stored/").rpartition(".")
        copy = await read_pin(fabric, "stored", stream, int(seq))
        assert copy is not None
        assert copy.subject == "stored.diff"
