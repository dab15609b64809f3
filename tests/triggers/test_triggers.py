"""Triggers against a real nats-server: exactly once across crashes, predicates, batching,
the built-in actions, and the workflow file's ``[[triggers]]``."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diaspora import ActorRuntime, codec
from diaspora.errors import ActorCrashed, ConfigError, ControlError
from diaspora.events import Lag
from diaspora.fabric import Fabric
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.streams._qos import AggregateFn, OverloadPolicy, Policy, QosSpec
from diaspora.streams._registry import declare_qos, lookup_qos
from diaspora.supervision import ChildSpec, Strategy, Supervisor, SupervisorSpec
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from diaspora.triggers import (
    CallAction,
    PublishAction,
    QosAction,
    Start,
    StartAt,
    StartChildAction,
    Trigger,
    TriggerSpec,
    TriggerStage,
    Where,
    request_start_child,
    serve_control,
    stage_factory,
    trigger_runtime,
)
from diaspora.workflow import actor_child, parse_config, trigger_child
from tests.triggers import trigger_actions as acts

pytestmark = pytest.mark.anyio

RECORD = "tests.triggers.trigger_actions:record"


async def publish(
    fabric: Fabric, subject: str, items: list[dict[str, Any]], pause: float = 0.0, **hdrs: str
) -> None:
    """Publish ``items`` (pausing ``pause`` s every 10, so that kills land mid-stream)."""
    await fabric.ensure_stream(subject)
    _, last = await fabric.stream_bounds(subject)
    async with OrderedPublisher(fabric, name=f"src-{subject}") as pub:
        for i, item in enumerate(items, start=last):
            await pub.publish(subject, codec.encode(item), headers=hdrs, msg_id=f"{subject}:{i}")
            if pause and i % 10 == 9:
                await pub.flush()
                await anyio.sleep(pause)
        await pub.flush()


def unique_batches(name: str) -> dict[str, list[int]]:
    """Batch id -> seqs; every delivery of one batch id must carry the same seqs."""
    out: dict[str, list[int]] = {}
    for batch_id, seqs, _ in acts.DELIVERIES[name]:
        assert out.setdefault(batch_id, seqs) == seqs, f"batch {batch_id} changed on redelivery"
    return out


def fired_once_each(batches: dict[str, list[int]], expected: list[int]) -> None:
    seqs = [seq for batch in batches.values() for seq in batch]
    assert sorted(seqs) == expected  # every matching message in exactly one batch
    assert len(seqs) == len(set(seqs))


async def run_until(
    runtime: ActorRuntime, done: Callable[[], Awaitable[bool] | bool], timeout: float = 60
) -> None:
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await wait_until(done, timeout=timeout, interval=0.02)
        runtime.request_stop()


async def run_killed_after(runtime: ActorRuntime, seconds: float) -> bool:
    """Run ``runtime`` and kill it (cancel: no final checkpoint) after ``seconds``;
    whether it crashed by itself first."""
    with anyio.move_on_after(seconds):
        try:
            await runtime.run()
        except ActorCrashed:
            return True
    return False


class FiresThenCrashes(TriggerStage):
    """The real stage, crashing right after the action and before completion is recorded."""

    crash_after: set[int] = set()

    async def _fire(self, host: Any, number: int, entries: Any) -> None:
        await TriggerStage._fire(self, host, number, entries)
        if number in self.crash_after:
            self.crash_after.discard(number)
            raise RuntimeError(f"crash after firing batch {number}")


def crashing_runtime(spec: TriggerSpec, fabric: Fabric) -> ActorRuntime:
    return ActorRuntime(
        Trigger,
        fabric,
        id=f"trigger-{spec.name}",
        args={"spec": spec},
        inputs=(spec.subject,),
        stages=[lambda: FiresThenCrashes(spec)],
    )


# -- exactly once across crashes --------------------------------------------------------


_EXAMPLES = itertools.count(1)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kills=st.lists(st.floats(0.01, 0.2), min_size=2, max_size=8),
    crash_on_first=st.sets(st.integers(1, 25), max_size=5),
    batch_size=st.integers(1, 9),
)
async def test_each_matching_message_fires_the_callable_once_across_kills(
    fabric: Fabric, kills: list[float], crash_on_first: set[int], batch_size: int
) -> None:
    example = next(_EXAMPLES)
    name = f"once{example}"
    n = 300
    items = [{"x": i, "level": i % 5} for i in range(n)]
    expected = [i + 1 for i in range(n) if i % 5 >= 3]
    acts.CRASH_ON_FIRST[name] = set(crash_on_first)
    spec = TriggerSpec(
        name,
        f"readings{example}",
        CallAction(RECORD),
        where=Where.from_mapping({"data.level": {">=": 3}}),
        batch_size=batch_size,
        window=0.05,
    )

    async def all_fired() -> bool:
        return sum(len(s) for s in unique_batches(name).values()) >= len(expected)

    async with anyio.create_task_group() as tg:
        await fabric.ensure_stream(spec.subject)
        tg.start_soon(publish, fabric, spec.subject, items, 0.02)
        for seconds in kills:  # killed mid-batch, while messages arrive
            await run_killed_after(trigger_runtime(spec, fabric), seconds)
        while not await all_fired():
            try:
                await run_until(trigger_runtime(spec, fabric), all_fired)
            except* ActorCrashed:
                pass  # the callable raised after recording: that batch comes again
    batches = unique_batches(name)
    fired_once_each(batches, expected)
    assert not acts.CRASH_ON_FIRST[name] or max(crash_on_first) > len(batches)
    repeated = [d for d in acts.DELIVERIES[name] if d[2]]
    assert all(d[0] in batches for d in repeated)
    # a batch delivered twice came back marked redelivered
    counts = collections.Counter(d[0] for d in acts.DELIVERIES[name])
    assert {i for i, c in counts.items() if c > 1} <= {d[0] for d in repeated}


async def test_publish_action_stores_each_batch_once_across_crashes_after_firing(
    fabric: Fabric,
) -> None:
    n = 100
    spec = TriggerSpec("pub", "events1", PublishAction("alerts1"), batch_size=4)
    FiresThenCrashes.crash_after = {1, 3, 8, 9}
    await publish(fabric, "events1", [{"x": i} for i in range(n)])

    async def published() -> list[Any]:
        return [m.data for m in await read_stream(fabric, "alerts1", missing_ok=True)]

    async def all_out() -> bool:
        return sum(len(b["events"]) for b in await published()) >= n

    crashes = 0
    while True:
        try:
            await run_until(crashing_runtime(spec, fabric), all_out)
            break
        except* ActorCrashed:
            crashes += 1
    await run_killed_after(trigger_runtime(spec, fabric), 0.3)  # nothing left to fire again
    assert crashes == 4
    batches = await published()
    assert [b["batch_no"] for b in batches] == list(range(1, n // 4 + 1))
    assert [e["data"]["x"] for b in batches for e in b["events"]] == list(range(n))
    stored = await read_stream(fabric, "alerts1")
    assert stored[0].headers["Nats-Msg-Id"] == "trigger-pub:batch:1"
    assert stored[0].headers["Diaspora-Trigger-Batch"] == "trigger-pub:batch:1"


# -- predicates, batching, start positions ----------------------------------------------


async def test_where_and_predicate_select_the_messages_that_fire(fabric: Fabric) -> None:
    await publish(fabric, "mixed", [{"x": i, "tag": "a" if i < 6 else "b"} for i in range(10)])
    await publish(fabric, "mixed", [{"x": 100}], **{"Diaspora-Actor": "root.other"})
    spec = TriggerSpec.from_mapping(
        {
            "name": "pick",
            "subject": "mixed",
            "where": {
                "data.tag": "a",
                "data.x": {"<": 5},
                "headers.Diaspora-Actor": {"exists": False},
            },
            "predicate": "tests.triggers.trigger_actions:even_x",
            "action": {"call": "tests.triggers.trigger_actions:record_sync"},
        }
    )
    runtime = trigger_runtime(spec, fabric)
    picked = acts.DELIVERIES["pick"]
    await run_until(runtime, lambda: len(picked) >= 3 and runtime.caught_up.is_set())
    assert [seqs for _, seqs, _ in acts.DELIVERIES["pick"]] == [[1], [3], [5]]


async def test_batches_fire_at_size_and_the_rest_when_the_window_closes(fabric: Fabric) -> None:
    await publish(fabric, "sized", [{"x": i} for i in range(12)])
    spec = TriggerSpec("sized", "sized", CallAction(RECORD), batch_size=5, window=0.5)
    await run_until(trigger_runtime(spec, fabric), lambda: len(acts.DELIVERIES["sized"]) >= 3)
    assert [seqs for _, seqs, _ in acts.DELIVERIES["sized"]] == [
        [1, 2, 3, 4, 5],
        [6, 7, 8, 9, 10],
        [11, 12],  # no more input: the window closed the batch
    ]


async def test_no_window_waits_for_a_full_batch_across_a_restart(fabric: Fabric) -> None:
    await publish(fabric, "full", [{"x": i} for i in range(3)])
    spec = TriggerSpec("full", "full", CallAction(RECORD), batch_size=5)
    first = trigger_runtime(spec, fabric)
    await run_until(first, first.caught_up.is_set)
    assert acts.DELIVERIES["full"] == []  # 3 pending, kept in the checkpoint
    await publish(fabric, "full", [{"x": i} for i in range(3, 5)])
    await run_until(trigger_runtime(spec, fabric), lambda: bool(acts.DELIVERIES["full"]))
    assert [seqs for _, seqs, _ in acts.DELIVERIES["full"]] == [[1, 2, 3, 4, 5]]


async def test_start_new_and_start_seq_skip_what_came_before(fabric: Fabric) -> None:
    await publish(fabric, "late", [{"x": i} for i in range(4)])
    new = TriggerSpec("new", "late", CallAction(RECORD), start=StartAt.from_config("new"))
    seq = TriggerSpec("seq", "late", CallAction(RECORD), start=StartAt.from_config({"seq": 3}))
    for spec in (new, seq):
        runtime = trigger_runtime(spec, fabric)
        await run_until(runtime, runtime.caught_up.is_set)
    async with OrderedPublisher(fabric, name="late2") as pub:
        await pub.publish("late", codec.encode({"x": 9}), msg_id="late:x9")
        await pub.flush()
    for spec, want in ((new, [[5]]), (seq, [[3], [4], [5]])):
        seen = acts.DELIVERIES[spec.name]
        await run_until(trigger_runtime(spec, fabric), lambda s=seen, k=len(want): len(s) >= k)  # noqa: B008
        assert [s for _, s, _ in seen] == want


async def test_a_trigger_on_an_event_pattern_fires_on_matching_events(fabric: Fabric) -> None:
    spec = TriggerSpec.from_mapping(
        {
            "name": "laggy",
            "subject": "diaspora.events.actor.*.lag",
            "where": {"data.lag": {">": 10}, "data.name": {"in": ["root.sum", "root.ingest"]}},
            "action": {"call": RECORD},
        }
    )
    for name, lag in (("root.sum", 5), ("root.sum", 50), ("other", 99), ("root.ingest", 11)):
        await fabric.emit(Lag(name=name, lag=lag))
    await run_until(trigger_runtime(spec, fabric), lambda: len(acts.DELIVERIES["laggy"]) >= 2)
    assert len(acts.DELIVERIES["laggy"]) == 2


# -- built-in actions -------------------------------------------------------------------


async def test_every_firing_publishes_a_fired_event_which_the_event_action_is_only(
    fabric: Fabric,
) -> None:
    await publish(fabric, "ticks", [{"x": i} for i in range(4)])
    ticks = TriggerSpec.from_mapping(
        {"name": "ticks", "subject": "ticks", "batch": {"size": 2}, "action": {"event": True}}
    )
    watch = TriggerSpec.from_mapping(
        {
            "name": "watch",
            "subject": "diaspora.events.trigger.*.fired",
            "where": {"data.trigger": "ticks"},
            "action": {"call": "tests.triggers.trigger_actions:record_data"},
        }
    )
    seen = acts.DATA["watch"]
    async with anyio.create_task_group() as tg:
        watcher = trigger_runtime(watch, fabric)
        await tg.start(watcher.run)
        await run_until(trigger_runtime(ticks, fabric), lambda: len(seen) >= 2)
        watcher.request_stop()
    assert [(e["batch"], e["batch_no"], e["count"], e["action"]) for e in seen] == [
        ("trigger-ticks:batch:1", 1, 2, "event"),
        ("trigger-ticks:batch:2", 2, 2, "event"),
    ]


async def test_start_child_action_starts_one_worker_per_batch_under_the_named_supervisor(
    fabric: Fabric,
) -> None:
    workers = SupervisorSpec(
        [actor_child("worker", acts.Worker, fabric, args={"batch": []})],
        strategy=Strategy.SIMPLE_ONE_FOR_ONE,
    )
    spec = TriggerSpec(
        "spawn",
        "jobs",
        StartChildAction("root.workers", {"label": "from-trigger"}),
        where=Where.from_mapping({"data.go": True}),
    )
    await publish(fabric, "jobs", [{"go": True}, {"go": False}, {"go": True}, {"go": True}])
    root = Supervisor(
        SupervisorSpec([ChildSpec("workers", workers), trigger_child(spec, fabric)], intensity=5),
        name="root",
    )
    async with anyio.create_task_group() as tg, serve_control(fabric, root):
        await tg.start(root.run)
        records = await root.which_children()
        (pool,) = [r.runnable for r in records if isinstance(r.runnable, Supervisor)]

        async def started() -> bool:
            return (await pool.count_children()).active >= 3

        await wait_until(started, timeout=30)
        # the same request id again (a trigger retrying after a crash) starts nothing more
        child = await request_start_child(
            fabric, "root.workers", {"batch": []}, request_id="root.trigger-spawn:batch:1"
        )
        counts = await pool.count_children()
        children = [r.runnable for r in await pool.which_children()]
        root.request_stop()
    assert counts.active == 3
    assert child == "root.workers.worker-1"
    actors = [c.actor for c in children if isinstance(c, ActorRuntime)]
    assert [a.label for a in actors] == ["from-trigger"] * 3  # type: ignore[attr-defined]
    assert [[e["seq"] for e in a.batch] for a in actors] == [[1], [3], [4]]  # type: ignore[attr-defined]


async def test_start_child_without_a_control_server_is_a_clear_error(fabric: Fabric) -> None:
    with pytest.raises(ControlError, match=r"nobody serves it.*diaspora run"):
        await request_start_child(fabric, "root.workers", {}, request_id="x", timeout=2)


async def test_qos_action_switches_the_streams_policy(fabric: Fabric) -> None:
    await declare_qos(fabric, "frames", QosSpec(max_lag_items=100))
    await publish(fabric, "overload", [{"level": 9}])
    spec = TriggerSpec(
        "shed", "overload", QosAction("frames", OverloadPolicy.drop_oldest()), batch_size=1
    )

    async def switched() -> bool:
        found = await lookup_qos(fabric, "frames")
        return found is not None and found.policy.kind is Policy.DROP_OLDEST

    await run_until(trigger_runtime(spec, fabric), switched)
    found = await lookup_qos(fabric, "frames")
    assert found is not None
    assert found.max_lag_items == 100  # the other bounds are kept


# -- the workflow file -------------------------------------------------------------------

GOOD = """
[supervisor]
intensity = 3
[[supervisor.children]]
id = "pool"
strategy = "simple_one_for_one"
[[supervisor.children.children]]
id = "worker"
actor = "tests.triggers.trigger_actions:Worker"
args = { batch = [] }

[[triggers]]
name = "hot"
subject = "readings"
where = { "data.level" = { ">" = 3 } }
batch = { size = 10, window = 2.5 }
start = "new"
action = { publish = "alerts" }

[[triggers]]
name = "spawn"
subject = "diaspora.events.actor.*.lag"
action = { start_child = "root.pool", args = { label = "lagging" } }

[[triggers]]
name = "shed"
subject = "load"
start = { time = 2026-01-01T00:00:00Z }
action = { qos = "frames", policy = { kind = "aggregate", n = 4, fn = "max" } }
"""


def test_triggers_in_a_workflow_file_become_supervised_children_of_the_root() -> None:
    config = parse_config(GOOD, source="flow.toml")
    ids = [child.id for child in config.spec.children]
    assert ids == ["pool", "trigger-hot", "trigger-spawn", "trigger-shed"]
    shed = config.spec.children[3].start.args["spec"]
    assert shed.action == QosAction("frames", OverloadPolicy.aggregate(4, AggregateFn.MAX))
    assert shed.start == StartAt(Start.TIME, 1767225600.0)
    actors = config.actors()
    assert actors["root.trigger-hot"] == ("readings",)
    assert "readings" in config.consumed()
    hot = config.spec.children[1].start
    assert (hot.args["spec"].batch_size, hot.args["spec"].window) == (10, 2.5)
    assert hot.stages[0].func is stage_factory(hot.args["spec"]).func


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('name = "x"\nsubject = "a"', "flow.toml: triggers[0]: missing required key 'action'"),
        (
            'name = "x"\nsubject = "a"\naction = { publish = "b" }\nbatch = { size = 0 }',
            "flow.toml: triggers[0].batch.size 0 must be >= 1",
        ),
        (
            'name = "x"\nsubject = "a"\naction = { publish = "b" }\nbatch = { sise = 3 }',
            "flow.toml: triggers[0].batch.sise: unknown key",
        ),
        (
            'name = "x"\nsubject = "a"\naction = { mail = "b" }',
            "flow.toml: triggers[0].action: needs exactly one of call, publish, start_child, qos, "
            "event",
        ),
        (
            'name = "x"\nsubject = "a"\naction = { publish = "b" }\n'
            'where = { "data.l" = { "~" = 1 } }',
            "flow.toml: triggers[0].where.data.l: unknown test '~'",
        ),
        (
            'name = "x"\nsubject = "a"\naction = { publish = "b" }\nwhere = { "body.l" = 1 }',
            "flow.toml: triggers[0].where.body.l: not a message field",
        ),
        (
            'name = "x"\nsubject = "a"\naction = { call = "tests.nowhere:fn" }',
            "flow.toml: triggers[0].action.call: 'tests.nowhere:fn': cannot import",
        ),
        (
            'name = "x"\nsubject = "a.*"\naction = { publish = "b" }',
            "flow.toml: triggers[0].subject: 'a.*' has a wildcard",
        ),
        (
            'name = "x y"\nsubject = "a"\naction = { publish = "b" }',
            "flow.toml: triggers[0].name: 'x y' is not a child id",
        ),
        (
            'name = "x"\nsubject = "a"\naction = { publish = "b" }\nstart = "oldest"',
            "flow.toml: triggers[0].start: 'oldest' is not 'all', 'new'",
        ),
        (
            'name = "x"\nsubject = "a"\naction = { qos = "b", policy = "sometimes" }',
            "flow.toml: triggers[0].action.policy",
        ),
    ],
)
def test_a_bad_trigger_table_is_an_error_naming_file_and_field(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"[supervisor]\n[[triggers]]\n{table}\n", source="flow.toml")
    assert str(caught.value).startswith(message), str(caught.value)


def test_two_triggers_with_one_name_are_an_error() -> None:
    table = '[[triggers]]\nname = "x"\nsubject = "a"\naction = { publish = "b" }\n'
    with pytest.raises(ConfigError, match=r"flow.toml: triggers\[1\].name: duplicate trigger 'x'"):
        parse_config(f"[supervisor]\n{table}{table}", source="flow.toml")
