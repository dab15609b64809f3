"""Monitors against a real nats-server: exact resumption after kills, alerts once, actions."""

from __future__ import annotations

import math
import random
from typing import Any, ClassVar

import anyio
import predict_user_models as user
import pytest

from diaspora import Actor, ActorRuntime, Message, codec
from diaspora.errors import ConfigError
from diaspora.events import MonitorAction, MonitorResolved, MonitorWarning, decode_record
from diaspora.fabric import Fabric
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.predict import AlertRule, Condition, MonitorSpec, Track, monitor_runtime
from diaspora.streams._qos import OverloadPolicy, QosSpec
from diaspora.streams._registry import declare_qos, lookup_qos
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from diaspora.workflow import parse_config

pytestmark = pytest.mark.anyio


def readings(n: int, seed: int) -> list[dict[str, Any]]:
    """Two hosts, two values a second each; host a jumps at 60 s, host b at 130 s."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = i * 0.5
        for host, jump in (("a", 60.0), ("b", 130.0)):
            v = 10.0 + rng.gauss(0, 1) + (40.0 if jump <= t < jump + 8 else 0.0)
            out.append({"host": host, "t": t, "v": v})
    return out


async def publish(
    fabric: Fabric, subject: str, items: list[dict[str, Any]], pause: float, start: int = 0
) -> None:
    await fabric.ensure_stream(subject)
    async with OrderedPublisher(fabric, name=f"src-{subject}") as pub:
        for i, item in enumerate(items, start=start):
            await pub.publish(subject, codec.encode(item), msg_id=f"{subject}:{i}")
            if i % 40 == 39:
                await pub.flush()
                await anyio.sleep(pause)
        await pub.flush()


async def events_of(fabric: Fabric, monitor: str) -> list[Any]:
    """The monitor's stored events (warnings, resolutions, actions), in order."""
    stored = await read_stream(fabric, "diaspora.events.>")  # the whole events stream
    prefix = f"diaspora.events.monitor.{monitor}."
    return [decode_record(m.data) for m in stored if m.subject.startswith(prefix)]


SPEC = MonitorSpec(
    "hosts", "readings", key="host", value="v", time="t", resample=1.0,
    model={"kind": "ewma_z", "alpha": 0.05, "z": 5.0, "freeze": True},
    alert=AlertRule(Condition("score", ">=", None), for_s=1.0), scores="readings.scores",
)  # fmt: skip


def expected_steps(
    items: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[tuple[str, int]]]:
    """What the monitor must emit, computed offline with the same tracks."""
    tracks: dict[str, Track] = {}
    scores, warnings = [], []
    for item in items:
        track = tracks.setdefault(item["host"], Track(SPEC))
        for s in track.add(item["t"], item["v"]):
            scores.append({"key": item["host"], "t": s.t, "score": s.score, "value": s.value})
            if s.transition == "warning":
                warnings.append((item["host"], s.alert))
    return scores, warnings


async def test_a_killed_monitor_resumes_with_no_gap_in_its_scores_and_no_duplicate_alert(
    fabric: Fabric,
) -> None:
    items = readings(400, seed=3)  # 200 s of data, 800 messages
    expected, warnings = expected_steps(items)
    assert len(warnings) >= 2  # one jump per host at least
    await fabric.ensure_stream("readings.scores")
    first = next(i for i, item in enumerate(items) if item["t"] >= 62.0)  # a has just warned
    await publish(fabric, "readings", items[:first], 0.0)
    async with anyio.create_task_group() as tg:  # killed right after its first warning
        first_run = monitor_runtime(SPEC, fabric)
        tg.start_soon(first_run.run)

        async def warned() -> bool:
            first, last = await fabric.stream_bounds("diaspora.events.monitor.hosts.warning")
            return last >= first  # the matching events' sequences (none: last < first)

        await wait_until(warned, timeout=30, interval=0.01)
        tg.cancel_scope.cancel()  # no final checkpoint: the warning is replayed on restart
    kills = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(publish, fabric, "readings", items[first:], 0.03, first)
        for seconds in (0.3, 0.2, 0.5, 0.25, 0.4):  # killed mid-stream: no final checkpoint
            with anyio.move_on_after(seconds):
                await monitor_runtime(SPEC, fabric).run()
            kills += 1
        runtime = monitor_runtime(SPEC, fabric)
        tg.start_soon(runtime.run)

        async def all_scored() -> bool:
            return len(await read_stream(fabric, "readings.scores", missing_ok=True)) >= len(
                expected
            )

        await wait_until(all_scored, timeout=60, interval=0.1)
        runtime.request_stop()
    assert kills == 5
    got = [m.data for m in await read_stream(fabric, "readings.scores")]
    assert [{k: g[k] for k in ("key", "t", "score", "value")} for g in got] == expected
    alerts = await events_of(fabric, "hosts")
    warned = [(e.key, e.alert) for e in alerts if isinstance(e, MonitorWarning)]
    assert warned == warnings  # each once, in order
    resolved = [(e.key, e.alert) for e in alerts if isinstance(e, MonitorResolved)]
    assert len(resolved) == len(set(resolved)) == len(warnings)
    assert all(math.isfinite(e.score) for e in alerts)


async def test_an_alert_switches_a_policy_and_the_resolve_switches_it_back(fabric: Fabric) -> None:
    await declare_qos(fabric, "edge1.patterns", QosSpec(max_lag_items=500))  # policy: block
    spec = MonitorSpec(
        "uplink", "uplink.lag", value="lag",
        model={"kind": "ewma_z"}, alert=AlertRule(Condition("value", ">", 100.0)),
        actions=(*_actions("policy:edge1.patterns=decimate(4)", "call:predict_user_models:note"),),
    )  # fmt: skip
    runtime = monitor_runtime(spec, fabric)
    consumer = ActorRuntime(Patterns, fabric, id="recon")  # a running consumer of the stream
    await fabric.ensure_stream("uplink.lag")
    await fabric.ensure_stream("edge1.patterns")
    async with anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        await tg.start(runtime.run)
        for lag in (5, 8, 400):
            await fabric.publish("uplink.lag", {"lag": lag})

        async def policy_is(kind: str) -> bool:
            spec = await lookup_qos(fabric, "edge1.patterns")
            return spec is not None and spec.policy.kind.value == kind

        await wait_until(lambda: policy_is("decimate"), timeout=20)
        qos = await lookup_qos(fabric, "edge1.patterns")
        assert qos == QosSpec(max_lag_items=500, policy=OverloadPolicy.decimate(4))
        for i in range(1, 9):  # the consumer keeps 1 item in 4 while warned: seqs 4, 8
            await fabric.publish("edge1.patterns", {"i": i})
        await wait_until(lambda: consumer.stats.skipped == 6, timeout=20)
        await fabric.publish("uplink.lag", {"lag": 7})
        await wait_until(lambda: policy_is("block"), timeout=20)
        await wait_until(lambda: consumer_switches(fabric, "policy_off"), timeout=20)
        for i in range(9, 13):  # released: every item is handled again
            await fabric.publish("edge1.patterns", {"i": i})
        await wait_until(lambda: len(Patterns.seen) == 6, timeout=20)
        consumer.request_stop()
        runtime.request_stop()
    assert Patterns.seen == [4, 8, 9, 10, 11, 12]
    (on,) = [e for e in await consumer_events(fabric) if e.kind == "policy_on"]
    assert (on.policy, on.reason) == ("decimate", "forced by monitor uplink")
    assert await lookup_qos(fabric, "edge1.patterns") == QosSpec(max_lag_items=500)
    events = await events_of(fabric, "uplink")
    kinds = [
        (type(e).__name__, getattr(e, "phase", None), getattr(e, "action", None)) for e in events
    ]
    assert kinds == [
        ("MonitorWarning", None, None),
        ("MonitorAction", "apply", "policy:edge1.patterns=decimate(4)"),
        ("MonitorAction", "apply", "call:predict_user_models:note"),
        ("MonitorResolved", None, None),
        ("MonitorAction", "revert", "policy:edge1.patterns=decimate(4)"),
        ("MonitorAction", "revert", "call:predict_user_models:note"),
    ]
    assert all(e.ok for e in events if isinstance(e, MonitorAction))
    warning = events[0]
    assert (warning.metric, warning.value, warning.threshold) == ("value", 400.0, 100.0)
    assert [type(e).__name__ for e in user.CALLS["uplink"]] == ["MonitorWarning", "MonitorResolved"]


class Patterns(Actor):
    """A consumer of ``edge1.patterns``: notes each item it handles."""

    inputs = ("edge1.patterns",)
    seen: ClassVar[list[int]] = []

    async def handle(self, msg: Message) -> None:
        Patterns.seen.append(msg.data["i"])


async def consumer_events(fabric: Fabric) -> list[Any]:
    stored = await read_stream(fabric, "diaspora.events.>")
    return [
        decode_record(m.data)
        for m in stored
        if m.subject.startswith("diaspora.events.actor.recon.policy")
    ]


async def consumer_switches(fabric: Fabric, kind: str) -> bool:
    first, last = await fabric.stream_bounds(f"diaspora.events.actor.recon.{kind}")
    return last >= first


def _actions(*texts: str) -> list[Any]:
    from diaspora.predict import parse_action

    return [parse_action(t, "actions") for t in texts]


METRICS = """
[metrics]
url = "http://127.0.0.1:8222"
period = 0.5
"""


def test_a_workflow_files_monitors_are_children_of_the_root_with_one_schema() -> None:
    text = """
[supervisor]
strategy = "one_for_one"
[[supervisor.children]]
id = "sum"
actor = "diaspora.actor:Actor"

[[monitors]]
name = "uplink_congestion"
on = "diaspora.events.actor.*.lag"
key = "actor"
value = "lag"
resample = 1.0
model = { kind = "ewma_z", alpha = 0.05 }
alert = { when = "forecast > 5000", for = 3.0, horizon = 30 }
actions = ["policy:edge1.patterns=decimate(4)", "migrate:root.recon=hpc-1,edge-1"]
"""
    tree = parse_config(text, source="flow.toml")
    child = tree.spec.children[-1]
    assert [c.id for c in parse_config(text + METRICS, source="flow.toml").spec.children] == [
        "sum", "metrics", "monitor-uplink_congestion",
    ]  # fmt: skip
    assert child.id == "monitor-uplink_congestion"
    spec = child.start.args["spec"]
    assert spec == MonitorSpec.from_mapping(
        {
            "name": "uplink_congestion", "on": "diaspora.events.actor.*.lag", "key": "actor",
            "value": "lag", "resample": 1.0, "model": {"kind": "ewma_z", "alpha": 0.05},
            "alert": {"when": "forecast > 5000", "for": 3.0, "horizon": 30},
            "actions": ["policy:edge1.patterns=decimate(4)", "migrate:root.recon=hpc-1,edge-1"],
        }
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"^flow\.toml: metrics: metrics\.period: 0\.0 must be"):
        parse_config(text + METRICS.replace("0.5", "0"), source="flow.toml")
    bad = text.replace("for = 3.0", "for = -1")
    with pytest.raises(
        ConfigError, match=r"^flow\.toml: monitors\[0\] \(uplink_congestion\)\.alert\.for: -1"
    ):
        parse_config(bad, source="flow.toml")
    bad = text.replace('"policy:edge1.patterns=decimate(4)"', '"policy:edge1.patterns=halve"')
    with pytest.raises(ConfigError, match=r"monitors\[0\] \(uplink_congestion\)\.actions\[0\]"):
        parse_config(bad, source="flow.toml")
    bad = text.replace('kind = "ewma_z", alpha = 0.05', 'kind = "predict_user_models:Level"')
    with pytest.raises(ConfigError, match=r"does not forecast"):
        parse_config(bad, source="flow.toml")


async def test_a_failed_action_is_reported_and_the_monitor_keeps_watching(fabric: Fabric) -> None:
    spec = MonitorSpec(
        "mover", "mover.load", value="load", alert=AlertRule(Condition("value", ">", 10.0)),
        actions=(*_actions("migrate:root.ghost=worker-2"),),
    )  # fmt: skip
    runtime = monitor_runtime(spec, fabric)
    await fabric.ensure_stream("mover.load")
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        for load in (1, 50, 2, 60):  # two warnings: the monitor survived the first failure
            await fabric.publish("mover.load", {"load": load})

        async def second_warning() -> bool:
            return sum(isinstance(e, MonitorWarning) for e in await events_of(fabric, "mover")) == 2

        await wait_until(second_warning, timeout=30, interval=0.2)
        runtime.request_stop()
    actions = [e for e in await events_of(fabric, "mover") if isinstance(e, MonitorAction)]
    assert [(a.phase, a.ok) for a in actions] == [
        ("apply", False),
        ("revert", True),
        ("apply", False),
    ]
    assert "root.ghost" in (actions[0].detail or "")
