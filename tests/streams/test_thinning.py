"""A producer that leaves items out on purpose (``Actor.leave_out``): not asked for, not lost."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from diaspora import ActorRuntime
from diaspora.fabric import Fabric
from diaspora.streams import QosSpec, declare_qos
from diaspora.testing import wait_until
from tests.streams.qos_actors import Collector, ThinningSensor, Throttle
from tests.streams.test_qos_runtime import collected, running, watching

pytestmark = pytest.mark.anyio


async def _run(fabric: Fabric, tmp_path: Path, *, restart_at: int | None = None) -> None:
    """Items 1..12 (2, 5, 8, 11 left out), the producer restarted after ``restart_at``."""
    throttle = Throttle(release=12 if restart_at is None else restart_at)
    args = {"throttle": throttle}
    collector = ActorRuntime(Collector, fabric, id="collector")
    async with running(collector):
        sensor = ActorRuntime(ThinningSensor, fabric, id="sensor", args=args, state_dir=tmp_path)
        async with running(sensor):
            await wait_until(lambda: sensor.actor.next > throttle.release)
        if restart_at is not None:
            throttle.set(release=12)
            sensor = ActorRuntime(
                ThinningSensor, fabric, id="sensor", args=args, state_dir=tmp_path
            )
            async with running(sensor):
                await wait_until(lambda: sensor.actor.next > 12)
        await wait_until(lambda: collector.positions.get("temps", 0) >= 8)
        await anyio.sleep(0.2)
        assert collector.stats.lost == 0


@pytest.mark.parametrize("restart_at", [None, 5])
async def test_left_out_items_are_thinned_not_lost(
    fabric: Fabric, tmp_path: Path, restart_at: int | None
) -> None:
    async with watching(fabric) as events:
        await _run(fabric, tmp_path, restart_at=restart_at)
    out = await collected(fabric)
    assert [x["item"] for x in out] == [1, 3, 4, 6, 7, 9, 10, 12]
    assert not any(x["reconstructed"] or x["replayed"] for x in out)
    thinned = events.of("collector", "thinned")
    assert [(e["first"], e["last"], e["reconstructed"]) for e in thinned] == [
        (2, 2, False),
        (5, 5, False),
        (8, 8, False),
        (11, 11, False),
    ]
    assert events.of("collector", "gap") == []
    assert events.of("collector", "lost") == []


async def test_left_out_items_get_marked_stand_ins_from_the_reconstructor(
    fabric: Fabric, tmp_path: Path
) -> None:
    await declare_qos(fabric, "temps", QosSpec(reconstructor="linear"))
    async with watching(fabric) as events:
        await _run(fabric, tmp_path)
    out = await collected(fabric)
    assert [x["item"] for x in out] == list(range(1, 13))
    assert [x["t"] for x in out] == [float(i) for i in range(1, 13)]  # linear: exact here
    assert [x["item"] for x in out if x["reconstructed"]] == [2, 5, 8, 11]
    assert [e["reconstructed"] for e in events.of("collector", "thinned")] == [True] * 4
    assert events.of("collector", "lost") == []
