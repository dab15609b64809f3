"""Actor runtime behaviours: poison messages, plain-client interop, fencing, windows, catch-up."""

from __future__ import annotations

import time
from typing import Any

import anyio
import msgpack
import nats
import numpy as np
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from diaspora import Actor, ActorRuntime, Message, codec
from diaspora.actor import CheckpointSlot, HandlerHung, required_window
from diaspora.actor._emit import OutputScan
from diaspora.errors import ActorCrashed, ConfigError, FencedOut
from diaspora.fabric import Fabric
from diaspora.testing import wait_until
from diaspora.testing._faults import FaultInjection, fault_subject
from diaspora.testing._streams import read_stream
from tests.actor.sample_actors import (
    Counter,
    Hoarder,
    Picky,
    PickyCrashing,
    RunningSum,
    Sleepy,
)
from tests.actor.test_exactly_once import run_until, stream_count

pytestmark = pytest.mark.anyio


async def run_with_restarts(fabric: Fabric, make: Any, done: Any, *, max_restarts: int = 50) -> int:
    """Run a fresh runtime from ``make()`` until ``done()``, restarting after each crash."""
    restarts = 0
    while True:
        try:
            await run_until(make(), done)
            return restarts
        except* ActorCrashed:
            restarts += 1
            assert restarts <= max_restarts


@pytest.mark.parametrize(
    ("actor", "restarts_expected"), [(Picky, 0), (PickyCrashing, PickyCrashing.max_attempts)]
)
async def test_poison_messages_are_dead_lettered_and_the_rest_emitted(
    fabric: Fabric, actor: type[Picky], restarts_expected: int
) -> None:
    await fabric.ensure_stream("jobs")
    for x in range(100):
        await fabric.publish("jobs", {"x": x})
    await fabric.publish_bytes("jobs", b"\xc1")  # not msgpack: undecodable
    await fabric.publish("jobs", {"x": "boom"})  # handle raises on it, every time
    for x in range(100, 200):
        await fabric.publish("jobs", {"x": x})

    async def all_out() -> bool:
        return await stream_count(fabric, "results") >= 200

    restarts = await run_with_restarts(
        fabric, lambda: ActorRuntime(actor, fabric, id="picky"), all_out
    )
    assert restarts == restarts_expected  # retried in place; or crashed max_attempts times
    assert [m.data["x"] for m in await read_stream(fabric, "results")] == [
        2 * x for x in range(200)
    ]
    dead = await read_stream(fabric, "diaspora.dlq.picky", stream="DIASPORA_DLQ")
    assert [(m.headers["Diaspora-Dead-Subject"], m.headers["Diaspora-Dead-Seq"]) for m in dead] == [
        ("jobs", "101"),
        ("jobs", "102"),
    ]
    undecodable, raising = (m.data for m in dead)
    assert undecodable["reason"].startswith("undecodable payload")
    assert undecodable["payload"] == b"\xc1"
    assert raising["reason"] == "handle raised 3 times: ValueError: cannot double 'boom'"
    assert "ValueError: cannot double 'boom'" in raising["traceback"]
    assert raising["attempts"] == 3
    assert codec.decode(raising["payload"]) == {"x": "boom"}


async def test_plain_nats_client_publishes_inputs_and_reads_outputs(fabric: Fabric) -> None:
    runtime = ActorRuntime(RunningSum, fabric, id="sum")
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)  # ensures the "numbers" stream exists
        # below: no diaspora at all, only nats-py and msgpack
        nc = await nats.connect(fabric.urls[0])
        js = nc.jetstream()
        for x in (1, 2, 3):
            await js.publish("numbers", msgpack.packb({"x": x}))
        await wait_until(lambda: runtime.positions["numbers"] >= 3)
        runtime.request_stop()
    sub = await js.pull_subscribe(
        "sums",
        durable=None,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
    )
    msgs = await sub.fetch(3, timeout=5)
    await nc.close()
    assert [msgpack.unpackb(m.data) for m in msgs] == [
        {"total": 1, "seq": 1},
        {"total": 3, "seq": 2},
        {"total": 6, "seq": 3},
    ]
    headers = msgs[1].headers or {}
    assert headers["Nats-Msg-Id"] == "sum:numbers:2:0"
    assert headers["Diaspora-Actor"] == "sum"
    assert headers["Diaspora-Source"] == "numbers:2"
    assert headers["Diaspora-Item"] == "2"
    assert float(headers["Diaspora-Emitted-At"]) <= time.time()


async def test_restart_resumes_from_checkpoint_position_not_broker_state(fabric: Fabric) -> None:
    await fabric.ensure_stream("numbers")
    for x in range(10):
        await fabric.publish("numbers", {"x": x})
    first = ActorRuntime(RunningSum, fabric, id="sum")
    await run_until(first, lambda: _true_after(first, 10))
    slot = await CheckpointSlot.claim(fabric, "sum")
    assert slot.current is not None
    assert slot.current.positions == {"numbers": 10}
    assert slot.current.state == {"total": 45}
    for x in range(10, 15):
        await fabric.publish("numbers", {"x": x})
    second = ActorRuntime(RunningSum, fabric, id="sum")
    await run_until(second, lambda: _true_after(second, 15))
    assert second.stats.handled == 5  # only what came after the checkpoint
    sums = [m.data["total"] for m in await read_stream(fabric, "sums")]
    assert sums == [sum(range(i + 1)) for i in range(15)]


async def _true_after(runtime: ActorRuntime, n: int) -> bool:
    return runtime.positions.get("numbers", 0) >= n


async def test_an_older_instance_is_fenced_out(fabric: Fabric) -> None:
    old = await CheckpointSlot.claim(fabric, "twin")
    await old.save(positions={"a": 1}, state=1)
    new = await CheckpointSlot.claim(fabric, "twin")
    assert new.epoch == old.epoch + 1
    await new.save(positions={"a": 2}, state=2)
    with pytest.raises(FencedOut, match="newer instance"):
        await old.save(positions={"a": 3}, state=3)
    again = await CheckpointSlot.claim(fabric, "twin")
    assert again.current is not None
    assert again.current.state == 2


async def test_large_state_goes_to_the_object_store(fabric: Fabric) -> None:
    await fabric.ensure_stream("frames")
    rng = np.random.default_rng(0)
    count = fabric.inline_limit // (256 * 256 * 4) + 10  # more than one KV value holds
    frames = [rng.random((256, 256), dtype=np.float32) for _ in range(count)]
    for frame in frames:
        await fabric.publish("frames", {"frame": frame})
    runtime = ActorRuntime(Hoarder, fabric, id="hoarder")
    await run_until(runtime, lambda: _positions_at(runtime, "frames", count))
    slot = await CheckpointSlot.claim(fabric, "hoarder")
    record = slot.current
    assert record is not None
    assert record.state_ref is not None
    assert record.state_ref.startswith("diaspora-checkpoints/")
    assert np.array_equal(record.state["frames"], np.stack(frames))  # 10 MiB round trip


async def _positions_at(runtime: ActorRuntime, subject: str, n: int) -> bool:
    return runtime.positions.get(subject, 0) >= n


async def test_output_streams_get_the_duplicate_window_the_checkpoint_interval_needs(
    fabric: Fabric,
) -> None:
    class Slow(Actor):
        inputs = ("in.slow",)
        outputs = ("out.slow",)
        checkpoint_interval = 200.0

    await fabric.ensure_stream("out.slow", duplicate_window=30)
    runtime = ActorRuntime(Slow, fabric, id="slow")
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        runtime.request_stop()
    window = await fabric.duplicate_window("out.slow")
    assert window == required_window(200.0, 60.0) == 260.0

    await fabric.ensure_stream("out.aged", max_age=100, duplicate_window=30)

    class Aged(Slow):
        outputs = ("out.aged",)

    with pytest.raises(ConfigError, match=r"needs a duplicate window of 260s.*max_age is 100s"):
        await ActorRuntime(Aged, fabric, id="aged").run()


class Echo(Actor):
    inputs = ("echo.in",)
    checkpoint_every = 1_000_000  # only the final / explicit checkpoints
    checkpoint_interval = 3600.0
    on_poison = "crash"

    def __init__(self, crash_at: int = 0) -> None:
        self.crash_at = crash_at

    async def handle(self, msg: Message) -> None:
        await self.emit("echo.out", {"seq": msg.seq})
        if msg.seq == self.crash_at:
            raise RuntimeError("crash after emitting")


@pytest.mark.parametrize("scan", [True, False])
async def test_replay_after_the_duplicate_window_passed_still_emits_once(
    fabric: Fabric, scan: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JetStream forgets ids after the window; the runtime's output scan must not."""
    await fabric.ensure_stream("echo.in")
    await fabric.ensure_stream("echo.out", duplicate_window=0.5)
    monkeypatch.setattr("diaspora.actor._runtime.required_window", lambda *_: 0.5)
    if not scan:
        monkeypatch.setattr(OutputScan, "scan", _no_scan)
    for _ in range(5):
        await fabric.publish("echo.in", {})
    first = ActorRuntime(Echo, fabric, id="echo")
    await run_until(first, lambda: _positions_at(first, "echo.in", 5))  # checkpoint at 5
    for _ in range(15):
        await fabric.publish("echo.in", {})
    # emits outputs 6..15, all after the checkpoint, then crashes
    crashing = ActorRuntime(Echo, fabric, id="echo", args={"crash_at": 15})
    with pytest.raises(ActorCrashed):
        await crashing.run()
    await anyio.sleep(1.5)  # longer than the duplicate window: JetStream has forgotten the ids
    final = ActorRuntime(Echo, fabric, id="echo")
    await run_until(final, lambda: _positions_at(final, "echo.in", 20))
    seqs = [m.data["seq"] for m in await read_stream(fabric, "echo.out")]
    if scan:
        assert seqs == list(range(1, 21))
        assert final.stats.skipped_replay == 10
    else:
        assert seqs != list(range(1, 21))  # without the scan, replay duplicates outputs


async def _no_scan(self: OutputScan, *args: Any) -> None:
    return None


async def test_restart_with_backlog_reports_lag_and_caught_up(fabric: Fabric) -> None:
    await fabric.ensure_stream("numbers")
    for x in range(3000):
        await fabric.publish("numbers", {"x": x})
    events: list[dict[str, Any]] = []

    async def collect(msg: Any) -> None:
        events.append({"subject": msg.subject, **codec.decode(msg.data)})

    async with fabric.subscription("diaspora.events.actor.sum.*", collect, flush=True):
        runtime = ActorRuntime(RunningSum, fabric, id="sum")
        await run_until(runtime, lambda: _true_after(runtime, 3000))
        await wait_until(lambda: any(e["kind"] == "stopped" for e in events))
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "lag"
    assert events[0]["lag"] == 3000
    assert runtime.caught_up.is_set()
    assert runtime.caught_up_after is not None
    assert "started" in kinds
    assert "checkpointed" in kinds


async def test_a_hung_handle_is_a_crash(fabric: Fabric) -> None:
    await fabric.ensure_stream("work")
    await fabric.publish("work", {"hang": False})
    await fabric.publish("work", {"hang": True})
    runtime = ActorRuntime(Sleepy, fabric, id="sleepy")
    with pytest.raises(ActorCrashed) as crashed:
        await runtime.run()
    assert isinstance(crashed.value.reason, HandlerHung)
    assert "work:2" in str(crashed.value.reason)
    slot = await CheckpointSlot.claim(fabric, "sleepy")
    notes = await slot.failures()
    assert [(note.seq, note.attempts) for note in notes.values()] == [(2, 1)]


async def test_a_source_resumes_without_duplicates(fabric: Fabric) -> None:
    class Flaky(Counter):
        checkpoint_every = 7

        def __init__(self, n: int, crash_at: int = 0) -> None:
            super().__init__(n)
            self.crash_at = crash_at

        async def produce(self) -> None:
            while self.next <= self.n:
                if self.next == self.crash_at:
                    raise RuntimeError("source crash")
                await self.emit(self.subject, {"i": self.next}, item=self.next)
                self.next += 1

    with pytest.raises(ActorCrashed):
        await ActorRuntime(Flaky, fabric, id="counter", args={"n": 50, "crash_at": 33}).run()
    await ActorRuntime(Flaky, fabric, id="counter", args={"n": 50}).run()
    stored = await read_stream(fabric, "counts")
    assert [m.data["i"] for m in stored] == list(range(1, 51))
    assert [m.headers["Diaspora-Item"] for m in stored] == [str(i) for i in range(1, 51)]


async def test_injected_faults_crash_and_hang_without_poisoning(fabric: Fabric) -> None:
    await fabric.ensure_stream("work")
    for _ in range(3):
        await fabric.publish("work", {"hang": False})
    faults = FaultInjection()
    runtime = ActorRuntime(Sleepy, fabric, id="sleepy", stages=[lambda: faults])
    faults.inject("crash")
    with pytest.raises(ActorCrashed) as crashed:
        await runtime.run()
    assert type(crashed.value.reason).__name__ == "InjectedFault"
    runtime = ActorRuntime(Sleepy, fabric, id="sleepy", stages=[lambda: faults])
    faults.inject("hang")  # Sleepy's handle_deadline (0.5 s) turns it into a crash
    with pytest.raises(ActorCrashed) as crashed:
        await runtime.run()
    assert isinstance(crashed.value.reason, HandlerHung)
    slot = await CheckpointSlot.claim(fabric, "sleepy")
    assert await slot.failures() == {}  # injected faults are not handle failures
    runtime = ActorRuntime(Sleepy, fabric, id="sleepy")
    await run_until(runtime, lambda: _positions_at(runtime, "work", 3))
    assert [m.data["seq"] for m in await read_stream(fabric, "done")] == [1, 2, 3]


async def test_faults_arrive_over_the_control_subject(nats_server: Any) -> None:
    async with Fabric(nats_server.url) as fabric:
        await fabric.ensure_stream("work")
        runtime = ActorRuntime(Sleepy, fabric, id="sleepy", stages=[FaultInjection])
        crashes: list[BaseException] = []
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(runtime.run)
                reply = await fabric.request(
                    fault_subject("sleepy"), codec.encode({"fault": "crash"}), timeout=5
                )
                assert reply.data == b"ok"
                await fabric.publish("work", {"hang": False})
                await anyio.sleep_forever()
        except* ActorCrashed as group:
            crashes.extend(group.exceptions)
        assert len(crashes) == 1
        assert "injected crash at work:1" in str(crashes[0])
