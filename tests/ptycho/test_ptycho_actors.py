"""The ptychography actors against a real nats-server, on a tiny 32 x 32 instrument."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

pytest.importorskip("torch")

from actors.ptycho.actors import (
    CONTROL,
    FRAMES,
    IMAGES,
    MODELS,
    QUALITY,
    RECON,
    STATUS,
    TILES_VIEW,
    TRAIN_VIEW,
    UPLINK,
    Detector,
    EdgeInference,
    Reconstructor,
    Trainer,
    tiles_view,
    train_view,
)
from actors.ptycho.model import ModelConfig, OnlineTrainer, load_model
from actors.ptycho.simulate import ScanConfig, Simulator
from diaspora import Actor, ActorRuntime
from diaspora.fabric import Fabric
from diaspora.streams import QosSpec, declare_qos
from diaspora.testing import read_stream, wait_until
from diaspora.views import view_runtime

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings(
        "ignore:.*treespec.*:FutureWarning", "ignore:.*val_dataloader.*", "ignore:.*workers.*"
    ),
]

SCAN: dict[str, Any] = {
    "n": 32, "grid": 4, "tile_side": 2, "step": 3, "pupil_radius": 5.0, "defocus": 3.0,
    "feature": 1.5, "seed": 1,
}  # fmt: skip
MODEL = {"nconv": 4, "depth": 2}
K = 4


async def count(fabric: Fabric, subject: str) -> int:
    return len(await read_stream(fabric, subject, decode=False))


async def run_until(
    fabric: Fabric,
    runtimes: Sequence[ActorRuntime],
    subject: str,
    n: int,
    timeout: float = 60.0,
) -> None:
    """Run the actors until ``subject`` holds ``n`` messages, then stop them."""
    async with anyio.create_task_group() as tg:
        for runtime in runtimes:
            await tg.start(runtime.run)

        async def enough() -> bool:
            return await count(fabric, subject) >= n

        await wait_until(enough, timeout=timeout, interval=0.1, what=f"{n} on {subject}")
        for runtime in runtimes:
            runtime.request_stop()


def runtime(fabric: Fabric, cls: type[Actor], id: str, **args: Any) -> ActorRuntime:
    return ActorRuntime(cls, fabric, id=id, args={"scan": SCAN, **args})


async def test_detector_emits_every_exposure_once_with_its_ids(fabric: Fabric) -> None:
    sim = Simulator(ScanConfig.of(SCAN))
    await fabric.ensure_stream(FRAMES)
    detector = runtime(fabric, Detector, "det", scans=2, rate=200.0)
    began = anyio.current_time()
    await run_until(fabric, [detector], FRAMES, 32)
    took = anyio.current_time() - began
    frames = [m.data for m in await read_stream(fabric, FRAMES)]
    assert [(f["scan"], f["index"]) for f in frames] == [(s, i) for s in (0, 1) for i in range(16)]
    assert [f["tile"] for f in frames[:16]] == [i // K for i in range(16)]
    for f in (frames[0], frames[21]):
        expected = sim.frame(f["scan"], f["index"])
        assert f["pos"] == list(expected.position)
        assert np.array_equal(f["pattern"], expected.pattern)
    assert took >= 31 / 200.0  # paced: 32 frames at 200 frames/s take 155 ms at least
    # a restart after the end emits nothing again
    await run_until(fabric, [runtime(fabric, Detector, "det", scans=2, rate=0)], FRAMES, 32)
    assert await count(fabric, FRAMES) == 32


async def test_a_detector_stopped_mid_scan_resumes_where_it_stopped(fabric: Fabric) -> None:
    await fabric.ensure_stream(FRAMES)
    await run_until(fabric, [runtime(fabric, Detector, "det", scans=1, rate=50.0)], FRAMES, 5)
    first = await count(fabric, FRAMES)
    assert 5 <= first < 16
    await run_until(fabric, [runtime(fabric, Detector, "det", scans=1, rate=0)], FRAMES, 16)
    frames = [m.data for m in await read_stream(fabric, FRAMES)]
    assert [f["index"] for f in frames] == list(range(16))  # each once, in order


async def test_reconstructor_makes_one_object_per_tile_below_the_bound(fabric: Fabric) -> None:
    for subject in (UPLINK, TILES_VIEW, RECON):
        await fabric.ensure_stream(subject)
    sim = Simulator(ScanConfig.of(SCAN))
    frames = list(sim.frames(1))
    for f in reversed(frames):  # out of order: the view groups them
        data = {"scan": f.scan, "tile": f.tile, "index": f.index, "pos": list(f.position)}
        await fabric.publish(UPLINK, {**data, "pattern": f.pattern})
    view = view_runtime(tiles_view(K), fabric)
    recon = runtime(fabric, Reconstructor, "recon", n_iter=30)
    await run_until(fabric, [view, recon], RECON, sim.tiles_per_scan)
    out = sorted((m.data for m in await read_stream(fabric, RECON)), key=lambda d: d["tile"])
    assert [d["tile"] for d in out] == [0, 1, 2, 3]
    for d in out:
        assert sorted(d["indices"]) == list(sim.tile_indices(d["tile"]))
        assert d["object"].dtype == np.complex64
        assert d["missing"] == 0
        assert d["truth_error"] < 0.15, d["truth_error"]  # 4 positions of 32 x 32


async def reconstructed_tiles(fabric: Fabric, sim: Simulator, scans: Sequence[int]) -> None:
    """Publish each tile's frames and its ePIE reconstruction (as the Reconstructor does)."""
    from actors.ptycho.actors import reconstruction_payload

    for scan in scans:
        for tile in sim.tiles(1, scan):
            frames = [
                {"scan": scan, "tile": tile.tile, "index": int(i), "pos": [int(v) for v in p],
                 "pattern": tile.patterns[j]}
                for j, (i, p) in enumerate(zip(tile.indices, tile.positions, strict=True))
            ]  # fmt: skip
            for f in frames:
                await fabric.publish(UPLINK, f)
            await fabric.publish(RECON, reconstruction_payload(frames, sim, n_iter=20))


async def test_trainer_publishes_growing_versions_and_resumes_from_its_checkpoint(
    fabric: Fabric,
) -> None:
    for subject in (UPLINK, RECON, TRAIN_VIEW, MODELS, QUALITY):
        await fabric.ensure_stream(subject)
    sim = Simulator(ScanConfig.of(SCAN))
    await reconstructed_tiles(fabric, sim, [0])
    args = {"model": MODEL, "steps_per_tile": 2, "batch_size": 8}
    view = view_runtime(train_view(K), fabric)
    await run_until(fabric, [view, runtime(fabric, Trainer, "trainer", **args)], MODELS, 4)
    await reconstructed_tiles(fabric, sim, [1])
    view = view_runtime(train_view(K), fabric)
    await run_until(fabric, [view, runtime(fabric, Trainer, "trainer", **args)], MODELS, 8)
    models = [m.data for m in await read_stream(fabric, MODELS)]
    assert [m["version"] for m in models] == list(range(1, 9))  # resumed at 5, not 1
    assert models[-1]["samples_seen"] == 32
    model, version = load_model(bytes(models[-1]["checkpoint"]))
    assert version == 8
    assert model.config == ModelConfig(n=32, **MODEL)
    obs = await fabric.ensure_object_store("ptycho-models")
    stored = await obs.get("v00000008")
    assert stored.data == bytes(models[-1]["checkpoint"])
    quality = [m.data for m in await read_stream(fabric, QUALITY)]
    assert sorted((q["scan"], q["tile"]) for q in quality) == [
        (s, t) for s in (0, 1) for t in range(4)
    ]
    assert [q["version"] for q in quality] == list(range(8))  # measured before training on it
    assert all(np.isfinite(q["error"]) and q["epie_truth_error"] < 0.2 for q in quality)


def update(trainer: OnlineTrainer, error: float) -> dict[str, Any]:
    return {"version": trainer.version, "val_error": error, "checkpoint": trainer.model_bytes()}


async def test_edge_switches_to_inference_and_back_and_never_goes_back_in_version(
    fabric: Fabric,
) -> None:
    for subject in (FRAMES, MODELS, QUALITY, UPLINK, IMAGES, STATUS, CONTROL):
        await fabric.ensure_stream(subject)
    sim = Simulator(ScanConfig.of(SCAN))
    trainer = OnlineTrainer(ModelConfig(n=32, **MODEL), probe=sim.probe)
    frames = list(sim.frames(2))

    async def publish_frames(tiles: range) -> None:
        for f in frames:
            if f.scan * 4 + f.tile in tiles:
                data = {"scan": f.scan, "tile": f.tile, "index": f.index, "pos": list(f.position)}
                await fabric.publish(FRAMES, {**data, "pattern": f.pattern, "t": 0.0})

    edge = runtime(fabric, EdgeInference, "edge", bound=0.3, window=2, batch_size=3, sample_every=2)
    async with anyio.create_task_group() as tg:
        await tg.start(edge.run)

        async def holds(subject: str, n: int) -> None:
            async def check() -> bool:
                return await count(fabric, subject) >= n

            await wait_until(check, timeout=30, interval=0.05, what=f"{n} on {subject}")

        trainer.version = 1
        await fabric.publish(MODELS, update(trainer, 0.9))  # too poor: keep sending all
        await publish_frames(range(0, 1))  # loaded at the first frame: all 4 go on
        await holds(UPLINK, 4)
        await holds(STATUS, 1)
        trainer.version = 3
        await fabric.publish(MODELS, update(trainer, 0.1))  # good: infer at the edge
        trainer.version = 2
        await fabric.publish(MODELS, update(trainer, 0.0))  # older than 3: ignored
        await publish_frames(range(1, 5))  # tiles 1..4 inferred, only 2 and 4 (0 of scan 1) go on
        await holds(IMAGES, 4)
        await fabric.publish(QUALITY, {"version": 3, "error": 0.6})
        await fabric.publish(QUALITY, {"version": 3, "error": 0.6})  # drifted up: send all
        await holds(STATUS, 3)
        await publish_frames(range(5, 6))
        await holds(UPLINK, 4 + 8 + 4)
        edge.request_stop()
    status = [m.data for m in await read_stream(fabric, STATUS)]
    assert [(s["mode"], s["version"], s["reason"]) for s in status] == [
        ("send_all", 1, "model"), ("infer", 3, "model"), ("send_all", 3, "drift"),
    ]  # fmt: skip
    forwarded = [(m.data["scan"], m.data["tile"]) for m in await read_stream(fabric, UPLINK)]
    assert forwarded == [(0, 0)] * 4 + [(0, 2)] * 4 + [(1, 0)] * 4 + [(1, 1)] * 4
    images = [m.data for m in await read_stream(fabric, IMAGES)]
    assert {m["version"] for m in images} == {3}
    inferred = sorted(
        (s, t, i)
        for m in images
        for s, t, i in zip(m["scan"], m["tile"], m["indices"], strict=True)
    )
    assert inferred == sorted(
        (f.scan, f.tile, f.index) for f in frames if 1 <= f.scan * 4 + f.tile < 5
    )
    assert all(len(m["indices"]) <= 3 for m in images)  # batches of at most 3, cut at tile ends
    assert images[0]["amplitude"].shape == (len(images[0]["indices"]), 32, 32)


async def test_edge_loads_only_the_newest_of_a_burst_of_model_versions(fabric: Fabric) -> None:
    """Five versions arrive before the next frame (the first models, or after an outage):
    the edge loads the newest one only, then forwards and infers the frames."""
    for subject in (FRAMES, MODELS, QUALITY, UPLINK, IMAGES, STATUS, CONTROL):
        await fabric.ensure_stream(subject)
    sim = Simulator(ScanConfig.of(SCAN))
    trainer = OnlineTrainer(ModelConfig(n=32, **MODEL), probe=sim.probe)
    edge = runtime(fabric, EdgeInference, "edge", bound=0.3, window=2, batch_size=4)
    async with anyio.create_task_group() as tg:
        await tg.start(edge.run)
        for version in range(1, 6):
            trainer.version = version
            await fabric.publish(MODELS, update(trainer, 0.1))
        for f in sim.frames(1):
            data = {"scan": f.scan, "tile": f.tile, "index": f.index, "pos": list(f.position)}
            await fabric.publish(FRAMES, {**data, "pattern": f.pattern, "t": 0.0})

        async def inferred() -> bool:
            return await count(fabric, IMAGES) >= 4  # the scan's 4 tiles

        await wait_until(inferred, timeout=60, interval=0.05, what="4 batches of images")
        edge.request_stop()
    status = [m.data for m in await read_stream(fabric, STATUS)]
    assert [(s["mode"], s["version"], s["reason"]) for s in status] == [("infer", 5, "model")]
    images = [m.data for m in await read_stream(fabric, IMAGES)]
    assert {m["version"] for m in images} == {5}


async def test_a_restarted_edge_keeps_its_mode_and_model_version(fabric: Fabric) -> None:
    for subject in (FRAMES, MODELS, QUALITY, UPLINK, IMAGES, STATUS, CONTROL):
        await fabric.ensure_stream(subject)
    sim = Simulator(ScanConfig.of(SCAN))
    trainer = OnlineTrainer(ModelConfig(n=32, **MODEL), probe=sim.probe)
    trainer.version = 3
    await fabric.publish(MODELS, update(trainer, 0.1))
    args = {"bound": 0.3, "batch_size": 4, "sample_every": 2}
    edge = runtime(fabric, EdgeInference, "edge", **args)
    async with anyio.create_task_group() as tg:
        await tg.start(edge.run)

        async def loaded() -> bool:
            # a pending model is loaded at the edge's next input; inputs of two subjects
            # arrive in either order, so quality reports (of that model, below the bound:
            # they change nothing else) go out until one comes after it
            if await count(fabric, STATUS) >= 1:
                return True
            await fabric.publish(QUALITY, {"version": 3, "scan": 0, "tile": 0, "error": 0.1})
            return False

        await wait_until(loaded, timeout=60, interval=0.2, what="the edge's first status")
        edge.request_stop()
    trainer.version = 2
    await fabric.publish(MODELS, update(trainer, 0.0))  # older: the restarted edge ignores it
    for f in sim.frames(1):
        if f.tile == 1:
            data = {"scan": f.scan, "tile": f.tile, "index": f.index, "pos": list(f.position)}
            await fabric.publish(FRAMES, {**data, "pattern": f.pattern, "t": 0.0})
    await run_until(fabric, [runtime(fabric, EdgeInference, "edge", **args)], IMAGES, 1)
    (image,) = [m.data for m in await read_stream(fabric, IMAGES)]
    assert image["version"] == 3  # the model came back from the checkpoint, not v2
    assert image["indices"] == [4, 5, 6, 7]
    assert await count(fabric, UPLINK) == 0  # still inferring: tile 1 is not sampled
    assert await count(fabric, STATUS) == 1


async def test_an_ordered_edge_thins_its_uplink_and_the_hpc_reconstructs_without_stand_ins(
    fabric: Fabric,
) -> None:
    """The order ``decimate = 2`` (EdgeControl's, on a congested uplink): the edge, sending
    all, sends 1 frame in 2 and leaves the others out; the tiles view gets a marked stand-in
    for each (its exposure, no pattern) and ePIE reconstructs each tile from the real ones."""
    for subject in (FRAMES, UPLINK, MODELS, QUALITY, CONTROL, STATUS, TILES_VIEW, RECON):
        await fabric.ensure_stream(subject)
    await declare_qos(
        fabric,
        UPLINK,
        QosSpec(
            reconstructor="actors.ptycho.standin:MissingFrame", reconstructor_args={"scan": SCAN}
        ),
    )
    await fabric.publish(
        CONTROL, {"decimate": 2, "hold": False, "by": "monitor uplink_lag warning"}
    )
    edge = runtime(fabric, EdgeInference, "infer", batch_size=4)
    view = view_runtime(tiles_view(K), fabric)
    recon = runtime(fabric, Reconstructor, "recon", n_iter=20)
    async with anyio.create_task_group() as tg:
        for rt in (edge, view, recon):
            await tg.start(rt.run)
        await wait_until(lambda: count(fabric, STATUS), what="the order taken")
        await run_until(fabric, [runtime(fabric, Detector, "det", scans=2, rate=0)], FRAMES, 32)
        # the last frame, left out, has no later frame to reveal it: 7 tiles of 8 complete
        await wait_until(lambda: _at_least(fabric, RECON, 7), timeout=60, what="7 tiles")
        for rt in (edge, view, recon):
            rt.request_stop()
    (status,) = [m.data for m in await read_stream(fabric, STATUS)]
    assert status["reason"] == "order: monitor uplink_lag warning"
    sent = await read_stream(fabric, UPLINK)
    assert [(m.data["scan"], m.data["index"]) for m in sent] == [
        (s, i) for s in (0, 1) for i in range(0, 16, 2)
    ]
    assert [m.headers.get("Diaspora-Thinned") for m in sent] == [None] + ["1"] * 15
    tiles = [m.data for m in await read_stream(fabric, RECON)]
    assert sorted((d["scan"], d["tile"]) for d in tiles) == [(0, t) for t in range(4)] + [
        (1, t) for t in range(3)
    ]
    for d in tiles:
        first = d["tile"] * K
        assert d["indices"] == [first, first + 2]  # the frames that came, not the stand-ins
        assert d["standins"] == [first + 1, first + 3]
        assert (d["patterns"], d["missing"]) == (K, 2)
        assert d["object"] is not None
        assert np.isfinite(d["truth_error"])
    assert edge.stats.lost == 0
    assert view.stats.lost == 0
    assert view.stats.reconstructed == 15


async def _at_least(fabric: Fabric, subject: str, n: int) -> bool:
    return await count(fabric, subject) >= n


async def test_edge_control_turns_the_monitors_alerts_into_whole_state_orders(
    fabric: Fabric,
) -> None:
    from actors.ptycho.actors import EdgeControl
    from diaspora.events import MonitorResolved, MonitorWarning

    await fabric.ensure_stream(CONTROL)

    def warning(name: str, alert: int = 1) -> MonitorWarning:
        return MonitorWarning(
            name=name, key="", alert=alert, metric="forecast", value=3.0, score=0.0,
            threshold=2.0, at=0.0,
        )  # fmt: skip

    def resolved(name: str) -> MonitorResolved:
        return MonitorResolved(
            name=name, key="", alert=1, metric="forecast", value=1.0, score=0.0, at=1.0,
            lasted_s=1.0,
        )  # fmt: skip

    control = ActorRuntime(EdgeControl, fabric, id="edge_control")
    async with anyio.create_task_group() as tg:
        await tg.start(control.run)
        for event in (
            warning("uplink_delay"),
            warning("uplink_lag"),  # already thinning: no new order
            warning("someone_else"),
            warning("edge_drift"),
            resolved("uplink_delay"),  # uplink_lag still warns
            resolved("uplink_lag"),
            resolved("edge_drift"),
        ):
            await fabric.emit(event)
        await wait_until(lambda: _at_least(fabric, CONTROL, 4), timeout=30, what="4 orders")
        await anyio.sleep(0.3)
        control.request_stop()
    orders = [m.data for m in await read_stream(fabric, CONTROL)]
    assert [(o["decimate"], o["hold"], o["by"]) for o in orders] == [
        (2, False, "monitor uplink_delay warning"),
        (2, True, "monitor edge_drift warning"),
        (1, True, "monitor uplink_lag resolved"),
        (1, False, "monitor edge_drift resolved"),
    ]


async def test_a_hold_order_sends_an_inferring_edge_back_to_sending_all(fabric: Fabric) -> None:
    for subject in (FRAMES, MODELS, QUALITY, UPLINK, IMAGES, STATUS, CONTROL):
        await fabric.ensure_stream(subject)
    edge = runtime(fabric, EdgeInference, "infer", bound=0.5, window=1)
    trainer = OnlineTrainer(ModelConfig(n=32, **MODEL), probe=Simulator(ScanConfig.of(SCAN)).probe)
    trainer.version = 1
    await fabric.publish(MODELS, update(trainer, 0.1))
    async with anyio.create_task_group() as tg:
        await tg.start(edge.run)
        # after the model (two inputs' backlogs are replayed in no set order): the report
        # loads the pending model, good, infer
        await wait_until(lambda: edge.stats.handled >= 1, timeout=30, what="the update")
        await fabric.publish(QUALITY, {"error": 0.1})
        await wait_until(lambda: _at_least(fabric, STATUS, 1), timeout=60, what="the model")
        await fabric.publish(
            CONTROL, {"decimate": 1, "hold": True, "by": "monitor edge_drift warning"}
        )
        await wait_until(lambda: _at_least(fabric, STATUS, 2), timeout=30, what="the hold")
        await fabric.publish(QUALITY, {"error": 0.0})  # good reports do not undo a hold...
        await fabric.publish(
            CONTROL, {"decimate": 1, "hold": False, "by": "monitor edge_drift resolved"}
        )
        await wait_until(lambda: _at_least(fabric, STATUS, 3), timeout=30, what="the release")
        await fabric.publish(QUALITY, {"error": 0.0})  # ...once released, they switch again
        await wait_until(lambda: _at_least(fabric, STATUS, 4), timeout=30, what="the switch")
        edge.request_stop()
    status = [m.data for m in await read_stream(fabric, STATUS)]
    assert [(s["mode"], s["reason"]) for s in status] == [
        ("infer", "model"),
        ("send_all", "order: monitor edge_drift warning"),
        ("send_all", "order: monitor edge_drift resolved"),
        ("infer", "quality"),
    ]


async def test_a_mode_change_mid_tile_takes_effect_at_the_next_tile(fabric: Fabric) -> None:
    """A hold arriving after half a tile was inferred: the rest of that tile is inferred too
    (none of it sent up, no partial tile at the HPC site), the next tile is sent up whole."""
    for subject in (FRAMES, MODELS, QUALITY, UPLINK, IMAGES, STATUS, CONTROL):
        await fabric.ensure_stream(subject)
    sim = Simulator(ScanConfig.of(SCAN))
    edge = runtime(fabric, EdgeInference, "infer", bound=0.5, window=1, batch_size=8)
    trainer = OnlineTrainer(ModelConfig(n=32, **MODEL), probe=sim.probe)
    trainer.version = 1
    await fabric.publish(MODELS, update(trainer, 0.1))
    frames = [f for f in sim.frames(1) if f.tile in (1, 2)]  # not sampled (every 4th)

    async def publish(chosen: list[Any]) -> None:
        for f in chosen:
            data = {"scan": f.scan, "tile": f.tile, "index": f.index, "pos": list(f.position)}
            await fabric.publish(FRAMES, {**data, "pattern": f.pattern, "t": 0.0})

    async with anyio.create_task_group() as tg:
        await tg.start(edge.run)
        await wait_until(lambda: edge.stats.handled >= 1, timeout=30, what="the update")
        await fabric.publish(QUALITY, {"error": 0.1})  # after it: loads it, good, infer
        await wait_until(lambda: _at_least(fabric, STATUS, 1), timeout=60, what="the model")
        await publish(frames[:2])  # half of tile 1, inferring
        await wait_until(lambda: edge.stats.handled >= 4, timeout=30, what="half a tile")
        await fabric.publish(CONTROL, {"hold": True, "by": "monitor edge_drift warning"})
        await wait_until(lambda: _at_least(fabric, STATUS, 2), timeout=30, what="the hold")
        await publish(frames[2:])  # the rest of tile 1, then tile 2
        await wait_until(lambda: _at_least(fabric, UPLINK, K), timeout=30, what="tile 2 sent")
        await wait_until(lambda: edge.stats.handled >= 3 + 2 * K, timeout=30, what="all handled")
        edge.request_stop()
    records = [m.data for m in await read_stream(fabric, STATUS)]
    status = [(r["mode"], r["reason"], r["held"]) for r in records]
    assert status == [
        ("infer", "model", False),
        ("send_all", "order: monitor edge_drift warning", True),
    ]
    forwarded = [(m.data["tile"], m.data["index"]) for m in await read_stream(fabric, UPLINK)]
    assert forwarded == [(2, int(i)) for i in sim.tile_indices(2)]  # tile 2 whole, 1 not
    inferred = sorted(
        (t, i)
        for m in await read_stream(fabric, IMAGES)
        for t, i in zip(m.data["tile"], m.data["indices"], strict=True)
    )
    assert inferred == [(1, int(i)) for i in sorted(sim.tile_indices(1))]  # tile 1 whole


async def test_bridge_lag_reports_the_copys_delay_locally_when_the_origin_does_not_answer(
    fabric: Fabric,
) -> None:
    """The delay is read from the local copy (its emit time against its stored time), so it
    is reported while the origin's bounds cannot be read across the link (here: a domain
    nobody serves); the lag is then left out, not zero."""
    import time

    from actors.ptycho.actors import LAG, BridgeLag
    from diaspora.fabric import headers as H

    for subject in (UPLINK, LAG):
        await fabric.ensure_stream(subject)
    await fabric.publish(UPLINK, {"i": 0}, headers={H.EMITTED_AT: repr(time.time() - 2.0)})
    lag = ActorRuntime(BridgeLag, fabric, id="lag", args={"origin": "nowhere", "period": 0.2})
    await run_until(fabric, [lag], LAG, 1)
    first = (await read_stream(fabric, LAG))[0].data
    assert "lag" not in first  # unknown, not zero
    assert 2.0 <= first["delay"] < 30.0


async def test_bridge_lag_reports_a_stalled_bridge_across_a_congested_link_not_a_cut_one(
    tmp_path: Path,
) -> None:
    """Two real sites, the edge's leaf link through a proxy. Caught up, then the link holds
    every byte (a congested link at its worst: still up, nothing through): the origin's
    answers time out and no copy comes, so each record's delay is the time since the last
    copy, growing. Cut instead (no responders at once), nothing is reported: an idle
    producer behind a cut link is not late."""
    import time

    from actors.ptycho.actors import LAG, BridgeLag
    from diaspora.fabric import Bridge, Sites, SiteSpec, ensure_bridge
    from diaspora.fabric import headers as H

    specs = (
        SiteSpec("edge", domain="edge", parent="hpc", link_proxy=True),
        SiteSpec("hpc", domain="hpc"),
    )
    async with (
        Sites(specs, state_dir=tmp_path / "servers") as sites,
        sites.fabric("edge") as edge,
        sites.fabric("hpc") as hpc,
    ):
        proxy = sites["edge"].proxy
        assert proxy is not None
        await edge.ensure_stream(UPLINK)
        await hpc.ensure_stream(LAG)
        await ensure_bridge(hpc, Bridge(UPLINK, "edge", "hpc"))
        for i in range(3):
            await edge.publish(UPLINK, {"i": i}, headers={H.EMITTED_AT: repr(time.time())})
        await wait_until(lambda: _at_least(hpc, UPLINK, 3), timeout=30, what="the 3 copied")
        lag = ActorRuntime(BridgeLag, hpc, id="lag", args={"origin": "edge", "period": 0.5})

        async def records() -> list[dict[str, Any]]:
            return [m.data for m in await read_stream(hpc, LAG)]

        since = [0.0]  #: caught up in a record made after this time

        async def caught_up() -> bool:
            return any(r.get("lag") == 0 and r["t"] > since[0] for r in await records())

        async with anyio.create_task_group() as tg:
            await tg.start(lag.run)
            await wait_until(caught_up, timeout=30, what="a record of the copy caught up")
            proxy.blackhole()
            held = time.time()

            async def stalled() -> list[dict[str, Any]]:
                return [r for r in await records() if r["t"] > held + 0.6 and "lag" not in r]

            await wait_until(lambda: _len_at_least(stalled, 3), timeout=30, what="3 stalled")
            delays = [r["delay"] for r in await stalled()]
            proxy.end_blackhole()
            since[0] = time.time()
            await wait_until(caught_up, timeout=30, what="caught up again")
            proxy.cut()
            cut = time.time()
            await anyio.sleep(3.0)
            during_cut = [r for r in await records() if r["t"] > cut + 0.6]
            proxy.reopen()
            lag.request_stop()
    assert delays == sorted(delays)  # the time since the last copy, growing
    assert delays[-1] >= 1.0
    assert during_cut == []  # the origin had no responders: not known to be late


async def _len_at_least(read: Any, n: int) -> bool:
    return len(await read()) >= n
