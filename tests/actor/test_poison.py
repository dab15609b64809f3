"""Poison messages never wedge an actor: per-input failure notes, durable dead letters,
retries in place (``on_poison = "retry"``) or crash-and-restart (``"crash"``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from diaspora import Actor, ActorRuntime, Message
from diaspora.actor import CheckpointSlot, OnPoison, PoisonPolicy
from diaspora.actor._poison import RETRY_BACKOFF
from diaspora.errors import ActorCrashed, ConfigError
from diaspora.events import DeadLettered, HandleFailed, MemorySink, Restarted
from diaspora.fabric import Fabric
from diaspora.testing import read_stream, wait_until
from diaspora.testing.plugin import WorkflowRunner
from diaspora.workflow import parse_config
from tests.actor.test_runtime import run_with_restarts

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
RUNNING_SUM = ROOT / "supervisors" / "running_sum.toml"


async def dead_letters(fabric: Fabric, actor: str) -> list[tuple[str, int]]:
    """The (subject, seq) of every dead letter of ``actor``, in order."""
    found = await read_stream(
        fabric, f"diaspora.dlq.{actor}", stream="DIASPORA_DLQ", missing_ok=True
    )
    return [(m.data["subject"], m.data["seq"]) for m in found]


async def outputs(fabric: Fabric, subject: str) -> list[Any]:
    return [m.data for m in await read_stream(fabric, subject, missing_ok=True)]


class Tally(Actor):
    """Emits ``2 * x``; records every ``handle`` call; ``{"fail": n}`` raises its first n calls."""

    inputs = ("tally.in",)
    checkpoint_every = 1_000_000  # only the checkpoints a test asks for
    checkpoint_interval = 3600.0

    def __init__(self, calls: list[int] | None = None) -> None:
        self.calls = calls if calls is not None else []

    async def handle(self, msg: Message) -> None:
        self.calls.append(msg.seq)
        if "fail" in msg.data and self.calls.count(msg.seq) <= msg.data["fail"]:
            raise ValueError(f"no x in seq {msg.seq}")
        await self.emit("tally.out", {"seq": msg.seq, "y": 2 * msg.data["x"]})


class CrashingTally(Tally):
    on_poison = "crash"


async def through_crashes(
    fabric: Fabric,
    cls: type[Actor],
    id: str,
    args: dict[str, Any],
    after_crash: Callable[[int], Awaitable[None]],
) -> int:
    """Run ``cls`` (restarted after each ``ActorCrashed``) until it has handled the 3 inputs
    of ``tally.in``; calls ``after_crash(crashes so far)`` after each crash; the crashes."""
    crashes = 0
    while True:
        runtime = ActorRuntime(cls, fabric, id=id, args=args)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(runtime.run)
                await wait_until(lambda r=runtime: r.positions.get("tally.in") == 3, timeout=20)
                runtime.request_stop()
            return crashes
        except* ActorCrashed:
            crashes += 1
        await after_crash(crashes)


class RecordingClock:
    """The system's clock, remembering every sleep it was asked for."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await anyio.sleep(seconds)


async def test_two_poison_messages_in_a_row_do_not_wedge_the_shipped_running_sum(
    fabric: Fabric, workflow: WorkflowRunner
) -> None:
    """The issue's scenario: ``{"y": 1}`` twice to running_sum.toml's actor, then a good input."""
    await fabric.ensure_stream("numbers")
    async with workflow(RUNNING_SUM) as wf:
        await fabric.publish("numbers", {"y": 1})  # handle reads msg.data["x"]: KeyError
        await fabric.publish("numbers", {"y": 1})
        await fabric.publish("numbers", {"x": 5})

        async def summed_or_ended() -> bool:
            return wf.ended or len(await outputs(fabric, "sums")) >= 1

        await wait_until(summed_or_ended, timeout=30, what="the sum of the good input")
        assert not wf.gave_up
        await wf.wait_running()
        restarts = [e for e in wf.events if isinstance(e, Restarted)]
    assert await outputs(fabric, "sums") == [{"total": 5, "seq": 3}]
    assert await dead_letters(fabric, "root_sum") == [("numbers", 1), ("numbers", 2)]
    assert len(restarts) <= wf.config.spec.intensity


async def test_handle_is_retried_in_place_with_backoff_then_dead_lettered(fabric: Fabric) -> None:
    await fabric.ensure_stream("tally.in")
    await fabric.publish("tally.in", {"fail": 99})  # poison: fails every time
    await fabric.publish("tally.in", {"fail": 1, "x": 2})  # fails once, then succeeds
    await fabric.publish("tally.in", {"x": 3})
    calls: list[int] = []
    clock, sink = RecordingClock(), MemorySink()
    runtime = ActorRuntime(Tally, fabric, args={"calls": calls}, clock=clock, events=sink)
    async with anyio.create_task_group() as tg:  # a crash would fail the task group
        await tg.start(runtime.run)
        await wait_until(lambda: runtime.positions.get("tally.in") == 3, timeout=20)
        runtime.request_stop()
    assert calls == [1, 1, 1, 2, 2, 3]  # in place: no restart replays anything
    assert await outputs(fabric, "tally.out") == [{"seq": 2, "y": 4}, {"seq": 3, "y": 6}]
    assert await dead_letters(fabric, "tally") == [("tally.in", 1)]
    (dead,) = await read_stream(fabric, "diaspora.dlq.tally", stream="DIASPORA_DLQ")
    assert dead.data["attempts"] == 3
    assert dead.data["reason"] == "handle raised 3 times: ValueError: no x in seq 1"
    assert "ValueError: no x in seq 1" in dead.data["traceback"]
    failed = [(e.seq, e.attempt, e.retry_in_s is None) for e in sink.of(HandleFailed)]
    assert failed == [(1, 1, False), (1, 2, False), (1, 3, True), (2, 1, False)]
    for event in sink.of(HandleFailed):
        if event.retry_in_s is not None:  # waited on the actor's clock, as the backoff says
            assert event.retry_in_s in clock.slept
            base = RETRY_BACKOFF.initial * RETRY_BACKOFF.factor ** (event.attempt - 1)
            jitter = RETRY_BACKOFF.jitter * base
            assert base - jitter <= event.retry_in_s <= base + jitter
    assert runtime.stats.dead_lettered == 1
    slot = await CheckpointSlot.claim(fabric, "tally")
    assert slot.current is not None
    assert slot.current.positions == {"tally.in": 3}


async def test_a_dead_letter_is_durable_before_any_checkpoint_covers_it(fabric: Fabric) -> None:
    """Killed right after dead-lettering (no checkpoint since): the restart skips the input."""
    await fabric.ensure_stream("tally.in")
    await fabric.publish("tally.in", {"fail": 99})
    await fabric.publish("tally.in", {"x": 1})
    calls: list[int] = []
    runtime = ActorRuntime(Tally, fabric, args={"calls": calls})
    with anyio.CancelScope() as killed:  # cancelled, not stopped: no final checkpoint
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            await wait_until(lambda: runtime.positions.get("tally.in") == 2, timeout=20)
            killed.cancel()
    slot = await CheckpointSlot.claim(fabric, "tally")
    assert slot.current is not None
    assert slot.current.positions == {"tally.in": 0}  # the first one only, before the inputs
    notes = await slot.failures()
    assert [(n.seq, n.attempts, n.dead) for n in notes.values()] == [(1, 3, True)]
    calls.clear()
    again = ActorRuntime(Tally, fabric, args={"calls": calls})
    async with anyio.create_task_group() as tg:
        await tg.start(again.run)
        await wait_until(lambda: again.positions.get("tally.in") == 2, timeout=20)
        again.request_stop()
    assert calls == [2]  # the dead-lettered input is not handled again
    assert await dead_letters(fabric, "tally") == [("tally.in", 1)]
    assert await outputs(fabric, "tally.out") == [{"seq": 2, "y": 2}]
    third = await CheckpointSlot.claim(fabric, "tally")
    assert third.current is not None
    assert third.current.positions == {"tally.in": 2}
    assert await third.failures() == {dead.source: dead for dead in notes.values()}
    # the next start finds the notes covered by the checkpoint and drops them
    final = ActorRuntime(Tally, fabric, args={"calls": calls})
    async with anyio.create_task_group() as tg:
        await tg.start(final.run)
        final.request_stop()
    assert await (await CheckpointSlot.claim(fabric, "tally")).failures() == {}


async def test_crash_mode_keeps_a_note_per_input_across_restarts(fabric: Fabric) -> None:
    """on_poison = "crash": two poison inputs in a row, each crashes max_attempts times."""
    await fabric.ensure_stream("tally.in")
    await fabric.publish("tally.in", {"fail": 99})
    await fabric.publish("tally.in", {"fail": 99})
    await fabric.publish("tally.in", {"x": 4})
    calls: list[int] = []
    seen: list[list[tuple[int, int, bool]]] = []

    async def note(crashes: int) -> None:
        assert crashes <= 2 * CrashingTally.max_attempts
        notes = await (await CheckpointSlot.claim(fabric, "tally")).failures()
        seen.append([(n.seq, n.attempts, n.dead) for n in notes.values()])

    crashes = await through_crashes(fabric, CrashingTally, "tally", {"calls": calls}, note)
    assert crashes == 2 * CrashingTally.max_attempts
    assert seen == [
        [(1, 1, False)],
        [(1, 2, False)],
        [(1, 3, False)],
        [(1, 3, True), (2, 1, False)],  # several notes at once: the first is not overwritten
        [(1, 3, True), (2, 2, False)],
        [(1, 3, True), (2, 3, False)],
    ]
    assert calls == [1, 1, 1, 2, 2, 2, 3]  # each dead-lettered one is never handled again
    assert await dead_letters(fabric, "tally") == [("tally.in", 1), ("tally.in", 2)]
    assert await outputs(fabric, "tally.out") == [{"seq": 3, "y": 8}]


class RunningTotal(Actor):
    """Adds each ``x`` to a total, emits the total, then raises on its first call of an input
    marked ``{"fail_after_emit": true}`` (the emit went out, the state moved past it)."""

    inputs = ("tally.in",)
    checkpoint_every = 1

    def __init__(self, calls: list[int]) -> None:
        self.calls, self.total = calls, 0

    async def handle(self, msg: Message) -> None:
        self.calls.append(msg.seq)
        self.total += msg.data["x"]
        await self.emit("tally.out", {"seq": msg.seq, "total": self.total})
        if msg.data.get("fail_after_emit") and self.calls.count(msg.seq) == 1:
            raise ValueError("failed after its emit")

    def snapshot(self) -> int:
        return self.total

    def restore(self, state: int) -> None:
        self.total = state


async def test_a_handle_that_failed_after_emitting_restarts_instead_of_counting_twice(
    fabric: Fabric,
) -> None:
    """A retry in place would run handle again on a state that already counted the input
    (total 1 + 2 + 2): an attempt that emitted crashes instead (retry mode notwithstanding),
    and the restart handles the input again from the checkpoint before it."""
    await fabric.ensure_stream("tally.in")
    for x in (1, 2, 4):
        await fabric.publish("tally.in", {"x": x, "fail_after_emit": x == 2})
    calls: list[int] = []

    async def once(crashes: int) -> None:
        assert crashes <= 1

    assert await through_crashes(fabric, RunningTotal, "total", {"calls": calls}, once) == 1
    assert calls[:2] == [1, 2]  # then from the checkpoint (after 1, or before it if unwritten)
    assert calls[-2:] == [2, 3]
    totals = [(o["seq"], o["total"]) for o in await outputs(fabric, "tally.out")]
    assert totals == [(1, 1), (2, 3), (3, 7)]  # the retried emit keeps its id: one copy


async def test_an_undecodable_payload_is_dead_lettered_once_across_restarts(
    fabric: Fabric,
) -> None:
    await fabric.ensure_stream("tally.in")
    await fabric.publish_bytes("tally.in", b"\xc1")
    await fabric.publish("tally.in", {"fail": 1, "x": 1})
    calls: list[int] = []
    sink = MemorySink()  # every start's events
    restarts = await run_with_restarts(
        fabric,
        lambda: ActorRuntime(CrashingTally, fabric, id="tally", args={"calls": calls}, events=sink),
        lambda: _has(fabric, "tally.out", 1),
    )
    assert restarts == 1  # the second input crashed once; the restart did not redo the first
    assert calls == [2, 2]
    assert [(e.subject, e.seq) for e in sink.of(DeadLettered)] == [("tally.in", 1)]
    assert await dead_letters(fabric, "tally") == [("tally.in", 1)]


async def _has(fabric: Fabric, subject: str, n: int) -> bool:
    return len(await outputs(fabric, subject)) >= n


async def test_the_runtime_override_wins_over_the_class(fabric: Fabric) -> None:
    await fabric.ensure_stream("tally.in")
    await fabric.publish("tally.in", {"fail": 99})
    await fabric.publish("tally.in", {"x": 1})
    calls: list[int] = []
    policy = PoisonPolicy(max_attempts=5, on_poison="retry")
    make = lambda: ActorRuntime(  # noqa: E731
        CrashingTally, fabric, id="tally", args={"calls": calls}, poison=policy
    )
    assert await run_with_restarts(fabric, make, lambda: _has(fabric, "tally.out", 1)) == 0
    assert calls == [1] * 5 + [2]


def test_workflow_files_set_max_attempts_and_on_poison_per_actor_child() -> None:
    config = parse_config(
        """
[[supervisor.children]]
id = "sum"
actor = "actors.examples:RunningSum"
max_attempts = 5
on_poison = "crash"
""",
        source="tree.toml",
    )
    assert config.spec.children[0].start.poison == PoisonPolicy(5, OnPoison.CRASH)
    with pytest.raises(ConfigError) as bad:
        parse_config(
            '[[supervisor.children]]\nid = "sum"\nactor = "actors.examples:RunningSum"\n'
            'on_poison = "skip"\n',
            source="tree.toml",
        )
    assert str(bad.value) == (
        "tree.toml: supervisor.children[0].on_poison: 'skip' is not one of retry, crash"
    )
    with pytest.raises(ConfigError, match=r"tree.toml: supervisor.children\[0\].max_attempts: 0"):
        parse_config(
            '[[supervisor.children]]\nid = "sum"\nactor = "actors.examples:RunningSum"\n'
            "max_attempts = 0\n",
            source="tree.toml",
        )
    with pytest.raises(ConfigError, match=r"Bad.on_poison: 'ignore' is not one of 'retry', 'cr"):

        class Bad(Actor):
            inputs = ("x",)
            on_poison = "ignore"


async def test_on_poison_crash_from_a_workflow_file_crashes_max_attempts_times(
    fabric: Fabric, workflow: WorkflowRunner, tmp_path: Path
) -> None:
    tree = tmp_path / "tree.toml"
    tree.write_text(
        """
[supervisor]
intensity = 10
period = 60.0

[[supervisor.children]]
id = "sum"
actor = "actors.examples:RunningSum"
max_attempts = 2
on_poison = "crash"
"""
    )
    await fabric.ensure_stream("numbers")
    async with workflow(tree) as wf:
        await fabric.publish("numbers", {"y": 1})
        await fabric.publish("numbers", {"x": 7})
        await wait_until(lambda: _has(fabric, "sums", 1), timeout=30, what="the good sum")
        restarts = [e for e in wf.events if isinstance(e, Restarted)]
    assert len(restarts) == 2  # max_attempts = 2 crashes, then the next start dead-letters
    assert await dead_letters(fabric, "root_sum") == [("numbers", 1)]
    assert await outputs(fabric, "sums") == [{"total": 7, "seq": 2}]


def diaspora_actor(path: str, url: str, stderr: Path) -> subprocess.Popen[bytes]:
    """``diaspora actor PATH --url URL --id sum`` as a real process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DIASPORA_URL", None)
    command = [sys.executable, "-m", "diaspora", "actor", path, "--url", url, "--id", "sum"]
    with stderr.open("wb") as err:
        return subprocess.Popen(command, cwd=ROOT, env=env, stderr=err)


async def test_diaspora_actor_without_a_supervisor_survives_a_poison_message(
    fabric: Fabric, tmp_path: Path
) -> None:
    await fabric.ensure_stream("numbers")
    proc = diaspora_actor("actors.examples:RunningSum", fabric.urls[0], tmp_path / "stderr")
    try:
        await fabric.publish("numbers", {"y": 1})
        await fabric.publish("numbers", {"x": 3})
        await wait_until(lambda: _has(fabric, "sums", 1), timeout=30, what="the good sum")
        assert proc.poll() is None, (tmp_path / "stderr").read_text()
        proc.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(lambda: proc.wait(timeout=30)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert await outputs(fabric, "sums") == [{"total": 3, "seq": 2}]
    assert await dead_letters(fabric, "sum") == [("numbers", 1)]
