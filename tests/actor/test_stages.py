"""Stages added from outside the actor layer, and checkpoint sections (old records included)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from diaspora import ActorRuntime, codec
from diaspora.actor import CheckpointSlot
from diaspora.actor._checkpoint import CHECKPOINT_BUCKET, kv_key
from diaspora.fabric import Fabric
from diaspora.stage import InputItem, Next, NextOut, OutputItem, Stage
from diaspora.testing._streams import read_stream
from tests.actor.sample_actors import RunningSum
from tests.actor.test_exactly_once import run_until

pytestmark = pytest.mark.anyio


class CountingStage(Stage):
    """A toy stage: counts the messages going in and out, and keeps the totals checkpointed."""

    name = "counting"
    section = "counting"
    instances: ClassVar[list[CountingStage]] = []

    def __init__(self) -> None:
        self.inbound_seen = 0
        self.outbound_seen = 0
        self.restored_from: dict[str, int] | None = None
        CountingStage.instances.append(self)

    async def inbound(self, item: InputItem, next: Next) -> None:
        self.inbound_seen += 1
        await next(item)

    async def outbound(self, out: OutputItem, next: NextOut) -> None:
        self.outbound_seen += 1
        out.headers["X-Counted"] = str(self.outbound_seen)
        await next(out)

    def snapshot(self) -> Any:
        return {"in": self.inbound_seen, "out": self.outbound_seen}

    def restore(self, data: Any, version: int) -> None:
        assert version == 1
        self.restored_from = dict(data)
        self.inbound_seen, self.outbound_seen = data["in"], data["out"]


async def _positions_at(runtime: ActorRuntime, n: int) -> bool:
    return runtime.positions.get("numbers", 0) >= n


async def test_a_stage_added_from_outside_counts_messages_and_keeps_its_section(
    fabric: Fabric,
) -> None:
    CountingStage.instances.clear()
    await fabric.ensure_stream("numbers")
    for x in range(10):
        await fabric.publish("numbers", {"x": x})
    first = ActorRuntime(RunningSum, fabric, id="counted", stages=[CountingStage])
    await run_until(first, lambda: _positions_at(first, 10))
    stage = CountingStage.instances[-1]
    assert (stage.inbound_seen, stage.outbound_seen) == (10, 10)
    assert stage in first.stages
    sums = await read_stream(fabric, "sums")
    assert [m.headers["X-Counted"] for m in sums] == [str(i) for i in range(1, 11)]

    slot = await CheckpointSlot.claim(fabric, "counted")
    assert slot.current is not None
    assert slot.current.section("counting") == {"in": 10, "out": 10}

    for x in range(10, 15):
        await fabric.publish("numbers", {"x": x})
    second = ActorRuntime(RunningSum, fabric, id="counted", stages=[CountingStage])
    await run_until(second, lambda: _positions_at(second, 15))
    again = CountingStage.instances[-1]
    assert again is not stage  # a fresh stage per start, restored from its section
    assert again.restored_from == {"in": 10, "out": 10}
    assert (again.inbound_seen, again.outbound_seen) == (15, 15)
    assert [m.data["total"] for m in await read_stream(fabric, "sums")][-1] == sum(range(15))


async def test_without_extra_stages_the_runtime_runs_none_of_them(fabric: Fabric) -> None:
    CountingStage.instances.clear()
    await fabric.ensure_stream("numbers")
    await fabric.publish("numbers", {"x": 1})
    runtime = ActorRuntime(RunningSum, fabric, id="plain")
    await run_until(runtime, lambda: _positions_at(runtime, 1))
    assert CountingStage.instances == []
    assert {s.name for s in runtime.stages} >= {"poison", "gap_recovery", "decode", "handle"}
    assert "qos_admission" not in {s.name for s in runtime.stages}  # no QoS declared


async def test_a_format_1_checkpoint_is_read_and_resumed(fabric: Fabric) -> None:
    """Records written before sections existed still restore positions, state and features."""
    await fabric.ensure_stream("numbers")
    for x in range(5):
        await fabric.publish("numbers", {"x": x})
    kv = await fabric.ensure_kv(CHECKPOINT_BUCKET)
    old = {  # exactly what the format-1 writer stored
        "format": 1,
        "actor": "legacy",
        "version": 3,
        "epoch": 2,
        "instance": "old-instance",
        "positions": {"numbers": 3},
        "items": {"sums": 3},
        "out_seqs": {"sums": 0},
        "seen": {"numbers": {"src": 7}},
        "tails": {},
        "snapshot_at": 0.0,
        "written_at": 0.0,
        "state_ref": None,
        "state": codec.encode({"total": 0 + 1 + 2}),
    }
    await kv.put(kv_key("legacy"), codec.encode(old))

    slot = await CheckpointSlot.claim(fabric, "legacy")
    assert slot.current is not None
    assert slot.current.positions == {"numbers": 3}
    assert slot.current.state == {"total": 3}
    assert slot.current.section("outputs") == {"items": {"sums": 3}, "out_seqs": {"sums": 0}}
    assert slot.current.section("recovery") == {"seen": {"numbers": {"src": 7}}, "tails": {}}

    runtime = ActorRuntime(RunningSum, fabric, id="legacy")
    await run_until(runtime, lambda: _positions_at(runtime, 5))
    sums = await read_stream(fabric, "sums")
    assert [m.data for m in sums] == [{"total": 6, "seq": 4}, {"total": 10, "seq": 5}]
    assert [m.headers["Diaspora-Item"] for m in sums] == ["4", "5"]  # numbering resumed
    raw = await kv.get(kv_key("legacy"))
    assert raw.value is not None
    assert codec.decode(raw.value)["format"] == 2  # rewritten in the current format


class _Tag(Stage):
    """Appends its letter to the item's source on the way in (to see the chain's order)."""

    def __init__(self, letter: str) -> None:
        self.letter = letter

    async def inbound(self, item: InputItem, next: Next) -> None:
        item.source += self.letter
        await next(item)


class _OutboundOnly(Stage):
    async def outbound(self, out: OutputItem, next: NextOut) -> None:
        await next(out)


async def test_a_chain_runs_its_stages_in_order_and_leaves_out_those_without_the_hook() -> None:
    from diaspora.stage import chain

    reached: list[str] = []

    async def last(item: InputItem) -> None:
        reached.append(item.source)

    stages: list[Stage] = [_Tag("a"), _OutboundOnly(), _Tag("b"), Stage()]
    inbound = chain(stages, "inbound", last)
    await inbound(InputItem("s", 1, {}, b"", "s:1:"))
    assert reached == ["s:1:ab"]
    # a chain of stages none of which has the hook is the last step itself
    assert chain([_OutboundOnly(), Stage()], "inbound", last) is last
    assert chain(stages, "outbound", last) is not last


async def test_an_outbound_stage_joining_later_takes_emits_through_it(fabric: Fabric) -> None:
    from diaspora.actor._emit import Emitter

    runtime = ActorRuntime(RunningSum, fabric, id="chain.probe")
    emitter = Emitter(runtime, lambda subject: None)
    emitter.build([Stage(), _Tag("x")])
    assert emitter._direct  # no outbound stage: emit publishes itself
    emitter.build([_OutboundOnly()])
    assert not emitter._direct
    emitter.build([])
    assert emitter._direct
