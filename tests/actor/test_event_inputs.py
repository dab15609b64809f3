"""Event inputs: an actor consumes DIASPORA_EVENTS through subject patterns, decoded typed."""

from __future__ import annotations

from collections.abc import MutableSet
from typing import Any

import anyio
import pytest

from diaspora import Actor, ActorRuntime, Message
from diaspora.errors import ConfigError
from diaspora.events import Crashed, Event, Lag, events_input
from diaspora.fabric import Fabric
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from tests.actor.sample_actors import RunningSum
from tests.actor.test_exactly_once import stream_count
from tests.actor.test_runtime import run_with_restarts

pytestmark = pytest.mark.anyio

ALL_LAGS = "diaspora.events.actor.*.lag"
SRC_LAGS = events_input(Lag, name="src")
SRC_CRASHES = events_input(Crashed, name="src")


async def emit_stored(fabric: Fabric, events: list[Event]) -> list[int]:
    """Emit ``events`` as a runtime does (core NATS) and wait until the stream holds them;
    returns their stream sequences."""
    _, before = await fabric.stream_bounds("diaspora.events.>")
    for event in events:
        await fabric.emit(event)

    async def stored() -> bool:
        return (await fabric.stream_bounds("diaspora.events.>"))[1] >= before + len(events)

    await wait_until(stored, timeout=10, what="events stored in DIASPORA_EVENTS")
    kept = await read_stream(fabric, "diaspora.events.>", start_seq=before + 1)
    assert len(kept) == len(events)
    return [m.seq for m in kept]


class LagWatcher(Actor):
    """Emits one ``lags`` item per Lag event of any actor but itself."""

    inputs = (ALL_LAGS,)

    async def handle(self, msg: Message) -> None:
        event = msg.event
        assert isinstance(event, Lag), event
        if event.name != self.id:  # its own catch-up reports match the filter too
            await self.emit("lags", {"name": event.name, "lag": event.lag, "seq": msg.seq})


async def test_an_actor_receives_typed_lag_events_and_emits_one_output_each(
    fabric: Fabric,
) -> None:
    await fabric.ensure_stream("numbers")
    for x in range(20):
        await fabric.publish("numbers", {"x": x})
    summer = ActorRuntime(RunningSum, fabric, id="sum")
    async with anyio.create_task_group() as tg:
        await tg.start(summer.run)  # 20 behind: its runtime publishes Lag(name="sum", lag=20)
        await summer.caught_up.wait()
        summer.request_stop()

    watcher = ActorRuntime(LagWatcher, fabric, id="watcher")
    async with anyio.create_task_group() as tg:
        await tg.start(watcher.run)
        with anyio.fail_after(10):
            await watcher.caught_up.wait()  # the sum's report, from the stream's backlog
        await emit_stored(fabric, [Lag(name="src", lag=i) for i in range(3)])  # live
        await wait_until(lambda: stream_count(fabric, "lags"), timeout=10, what="first output")

        async def all_out() -> bool:
            out = await read_stream(fabric, "lags", missing_ok=True)
            return [m.data["name"] for m in out][-3:] == ["src"] * 3

        await wait_until(all_out, timeout=10, what="an output per live Lag")
        watcher.request_stop()
    out = [m.data for m in await read_stream(fabric, "lags")]
    assert out[0]["name"] == "sum"
    assert out[0]["lag"] == 20
    assert [(d["name"], d["lag"]) for d in out if d["name"] == "src"] == [
        ("src", 0),
        ("src", 1),
        ("src", 2),
    ]
    assert {d["name"] for d in out} == {"sum", "src"}
    assert list(watcher.positions) == [ALL_LAGS]
    assert watcher.positions[ALL_LAGS] == out[-1]["seq"]


class LagCounter(Actor):
    """Counts the Lag events of ``src`` (state), emits the count per event; crashes on demand."""

    inputs = (SRC_LAGS,)
    checkpoint_every = 4
    on_poison = "crash"

    def __init__(self, crash_at: MutableSet[int] | None = None) -> None:
        self.count = 0
        self.crash_at = crash_at if crash_at is not None else set()

    async def handle(self, msg: Message) -> None:
        event = msg.event
        assert isinstance(event, Lag), event
        self.count += 1
        if event.lag in self.crash_at:
            self.crash_at.discard(event.lag)
            raise RuntimeError(f"injected crash at lag {event.lag}")
        await self.emit("counted", {"lag": event.lag, "count": self.count})

    def snapshot(self) -> int:
        return self.count

    def restore(self, state: Any) -> None:
        self.count = int(state)


def noisy(lags: range) -> list[Event]:
    """Lag events of ``src``, each followed by events the filter does not match."""
    out: list[Event] = []
    for i in lags:
        out += [Lag(name="src", lag=i), Crashed(name="src", reason="x"), Lag(name="b", lag=i)]
    return out


async def test_crashes_and_restarts_handle_each_event_once_and_emit_each_output_once(
    fabric: Fabric,
) -> None:
    seqs = await emit_stored(fabric, noisy(range(30)))
    crash_at = {5, 13, 22}

    async def all_out() -> bool:
        return await stream_count(fabric, "counted") >= 30

    last: list[ActorRuntime] = []

    def make() -> ActorRuntime:
        last.append(ActorRuntime(LagCounter, fabric, id="counter", args={"crash_at": crash_at}))
        return last[-1]

    restarts = await run_with_restarts(fabric, make, all_out)
    assert restarts == 3
    out = await read_stream(fabric, "counted")
    # replays after each crash re-emitted outputs: the duplicate window dropped them
    assert [(m.data["lag"], m.data["count"]) for m in out] == [(i, i + 1) for i in range(30)]
    ids = [m.headers["Nats-Msg-Id"] for m in out]
    assert len(set(ids)) == 30
    assert ids[0] == f"counter:{SRC_LAGS}:{seqs[0]}:0"
    assert last[-1].positions == {SRC_LAGS: seqs[3 * 29]}  # the last Lag of src


class TwoFilters(Actor):
    """One output per event of either input, saying which input it came by."""

    inputs = (SRC_LAGS, SRC_CRASHES)

    async def handle(self, msg: Message) -> None:
        kind = type(msg.event).__name__
        await self.emit("filtered", {"input": msg.subject, "type": kind, "seq": msg.seq})


async def test_two_event_inputs_of_one_actor_have_their_own_consumers(fabric: Fabric) -> None:
    seqs = await emit_stored(fabric, noisy(range(10)))
    for start in range(2):
        runtime = ActorRuntime(TwoFilters, fabric, id="two")

        async def out_count(n: int = 20 + 4 * start) -> bool:
            return await stream_count(fabric, "filtered") >= n

        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            if start:  # after a restart, each input resumes after its own position
                seqs += await emit_stored(fabric, noisy(range(10, 12)))
            await wait_until(out_count, timeout=10, what="an output per event")
            consumers = [  # the runtime's durable consumers (not the test's readers)
                c
                for c in await fabric.js.consumers_info("DIASPORA_EVENTS")
                if c.name.startswith("dsp-two")
            ]
            filters = sorted(c.config.filter_subject or "" for c in consumers)
            assert filters == sorted([SRC_LAGS, SRC_CRASHES])
            assert len({c.name for c in consumers}) == 2
            runtime.request_stop()
        assert runtime.positions == {SRC_LAGS: seqs[-3], SRC_CRASHES: seqs[-2]}
    out = [m.data for m in await read_stream(fabric, "filtered")]
    lags = [d["seq"] for d in out if d["input"] == SRC_LAGS]
    crashes = [d["seq"] for d in out if d["input"] == SRC_CRASHES]
    assert lags == seqs[0::3]
    assert crashes == seqs[1::3]
    assert {d["type"] for d in out if d["input"] == SRC_LAGS} == {"Lag"}
    assert {d["type"] for d in out if d["input"] == SRC_CRASHES} == {"Crashed"}


def test_a_wildcard_outside_the_events_prefix_is_refused_naming_the_field() -> None:
    class Watches(Actor):
        inputs = ("xs", ALL_LAGS, "diaspora.events.>")

    assert Watches.inputs == ("xs", ALL_LAGS, "diaspora.events.>")
    only_events = "has a wildcard: only an event input"
    with pytest.raises(ConfigError, match=rf"Bad\.inputs: 'xs\.\*' {only_events}"):

        class Bad(Actor):
            inputs = ("xs.*",)

    with pytest.raises(ConfigError, match=rf"actor 'w': inputs: 'edge1\.>' {only_events}"):
        ActorRuntime(LagWatcher, Fabric("nats://127.0.0.1:1"), id="w", inputs=["edge1.>"])
    with pytest.raises(ConfigError, match=r"Reserved\.inputs: 'diaspora\.dlq\.x' is under"):

        class Reserved(Actor):
            inputs = ("diaspora.dlq.x",)

    with pytest.raises(ConfigError, match=r"Odd\.inputs: 'diaspora\.events\.a\*' is not a"):

        class Odd(Actor):
            inputs = ("diaspora.events.a*",)


async def test_caught_up_is_set_with_a_backlog_of_events_the_filter_does_not_match(
    fabric: Fabric,
) -> None:
    seqs = await emit_stored(fabric, [Lag(name="src", lag=i) for i in range(3)])
    await emit_stored(fabric, [Crashed(name="noise", reason=str(i)) for i in range(50)])
    counter = ActorRuntime(LagCounter, fabric, id="counter")
    nothing = ActorRuntime(LagCounter, fabric, id="idle", inputs=[events_input(Lag, name="none")])
    async with anyio.create_task_group() as tg:
        await tg.start(counter.run)
        await tg.start(nothing.run)
        with anyio.fail_after(10):
            await counter.caught_up.wait()
            await nothing.caught_up.wait()
        counter.request_stop()
        nothing.request_stop()
    assert counter.stats.handled == 3
    assert counter.positions == {SRC_LAGS: seqs[-1]}
    assert nothing.stats.handled == 0
