"""The fold: recorded events into the tree, sites, timeline and alerts; then a real tree."""

from __future__ import annotations

import anyio
import pytest

from diaspora.events import (
    Checkpointed,
    ChildStarted,
    Crashed,
    Event,
    Exited,
    Lag,
    LinkFaulted,
    LinkHealed,
    NodeStarted,
    Placed,
    PolicyOff,
    PolicyOn,
    Restarted,
    Started,
    UnknownEvent,
)
from diaspora.fabric import Fabric, Sites, SiteSpec
from diaspora.observe import Observed, Watcher, WorkflowModel
from diaspora.testing import Injector, wait_until
from diaspora.testing.plugin import WorkflowRunner
from diaspora.workflow import parse_config
from tests.observe.trees import SLOW, burst, restarted

pytestmark = pytest.mark.anyio

#: What a process-node tree with a crash, a link fault, a policy switch and an alert emits.
RECORDED: list[tuple[float, Event]] = [
    (0.0, ChildStarted(name="root", child="ingest", incarnation=0)),
    (0.1, NodeStarted(name="root.ingest", child="sum", incarnation=0, pid=4242)),
    (0.2, Started(name="root.ingest.sum", positions={"numbers": 0}, epoch=1, pid=4242)),
    (0.3, Placed(name="pool", site="edge", actor="root.ingest.sum", worker="w1")),
    (1.0, Checkpointed(name="root.ingest.sum", version=1, positions={"numbers": 10}, handled=0)),
    (3.0, Checkpointed(name="root.ingest.sum", version=2, positions={"numbers": 210}, handled=200,
                       emitted=100)),
    (4.0, Crashed(name="root.ingest.sum", reason="ValueError('bad')", subject="numbers", seq=211)),
    (4.0, Exited(name="root.ingest", child="sum", reason="ValueError('bad')", normal=False)),
    (4.1, Restarted(name="root.ingest", child="sum", incarnation=1, attempt=1, cause="sum")),
    (4.6, Started(name="root.ingest.sum", positions={"numbers": 210}, epoch=2, pid=4242)),
    (4.6, Lag(name="root.ingest.sum", lag=900)),
    (5.0, LinkFaulted(name="edge", fault="cut_link", duration=2.0)),
    (5.5, PolicyOn(name="root.ingest.sum", subject="numbers", mode="lag", policy="drop_oldest",
                   reason="lag", lag=900)),
    (6.0, UnknownEvent(name="lagpredict", of_category="monitor", of_kind="warning",
                       data={"score": 0.9})),
    (7.0, LinkHealed(name="edge", fault="cut_link", by="timer")),
    (7.5, PolicyOff(name="root.ingest.sum", subject="numbers", mode="lag", policy="drop_oldest",
                    reason="lag", lag=3)),
]  # fmt: skip


def fold(events: list[tuple[float, Event]]) -> WorkflowModel:
    model = WorkflowModel(period=60.0)
    for seq, (at, event) in enumerate(events, 1):
        model.apply(Observed(seq=seq, time=100.0 + at, event=event))
    return model


def test_recorded_events_fold_into_the_tree_with_its_restart_rates_lag_and_placement() -> None:
    snap = fold(RECORDED[:11]).snapshot(now=106.0)
    tree = {row["id"]: row for row in snap["tree"]}
    assert [row["id"] for row in snap["tree"]] == ["root", "root.ingest", "root.ingest.sum"]
    assert [row["depth"] for row in snap["tree"]] == [0, 1, 2]
    sum_ = tree["root.ingest.sum"]
    assert (sum_["state"], sum_["incarnation"], sum_["restarts"]) == ("running", 1, 1)
    assert (sum_["pid"], sum_["site"], sum_["worker"]) == (4242, "edge", "w1")
    assert sum_["inputs"] == ["numbers"]
    assert (sum_["inputs_per_s"], sum_["outputs_per_s"]) == (100.0, 50.0)
    assert (sum_["lag"], sum_["lag_s"]) == (900, 9.0)  # 900 items at 100 inputs/s
    assert sum_["last_error"] == "ValueError('bad')"
    assert tree["root.ingest"]["kind"] == "supervisor"
    assert snap["series"]["root.ingest.sum"]["lag"] == [(104.6, 900)]
    assert fold(RECORDED[:11]).snapshot(now=200.0)["tree"][2]["restarts"] == 0  # out of period


def test_the_timeline_has_each_fault_with_its_recovery_and_the_alerts_are_active_ones() -> None:
    model = fold(RECORDED)
    timeline = [(i["kind"], i["who"], i["recovery_s"]) for i in model.snapshot()["timeline"]]
    assert timeline == [
        ("crash", "root.ingest.sum", 0.6),  # the exit that follows the crash is the same fault
        ("restart", "root.ingest.sum", 0.0),
        ("link cut_link", "edge", 2.0),
        ("policy", "root.ingest.sum numbers", 2.0),
        ("alert", "monitor lagpredict", None),
    ]
    (alert,) = model.snapshot()["alerts"]
    assert (alert["who"], alert["detail"]) == ("monitor lagpredict", "score=0.9")
    resolved = UnknownEvent(name="lagpredict", of_category="monitor", of_kind="resolved")
    model.apply(Observed(seq=99, time=110.0, event=resolved))
    assert model.snapshot()["alerts"] == []
    assert model.snapshot()["timeline"][-1]["recovery_s"] == pytest.approx(4.0)


def test_sites_go_down_with_a_cut_and_up_when_healed() -> None:
    states = []
    model = WorkflowModel()
    for seq, (at, event) in enumerate(RECORDED, 1):
        model.apply(Observed(seq=seq, time=at, event=event))
        if "edge" in model.sites.rows:
            states.append(model.sites.rows["edge"].state)
    assert (states[0], "down" in states, states[-1]) == ("up", True, "up")
    model.leafz({"leafs": [{"name": "edge", "rtt": "1.5ms", "in_bytes": 0, "out_bytes": 0}]}, 1)
    model.leafz({"leafs": [{"name": "edge", "rtt": "2ms", "in_bytes": 500, "out_bytes": 100}]}, 2)
    edge = model.snapshot()["sites"][0]
    assert (edge["rtt_ms"], edge["in_bytes_per_s"], edge["out_bytes_per_s"]) == (2.0, 500, 100)
    model.leafz({"leafs": []}, 3)
    assert model.snapshot()["sites"][0]["state"] == "down"


async def test_a_watcher_sees_a_real_crash_restart_and_backlog_and_survives_a_server_restart(
    fabric: Fabric, workflow: WorkflowRunner, injector: Injector
) -> None:
    await fabric.ensure_stream("obs.in")
    async with workflow(parse_config(SLOW)) as wf, Fabric(fabric.urls) as observer:
        await wf.wait_running()
        watcher = Watcher(observer, poll_s=0.2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.run)
            await watcher.caught_up.wait()
            model = watcher.model
            await wait_until(lambda: "root.slow" in model.actors.rows, timeout=20)
            await burst(fabric)  # a backlog first, then the crash in it: the restart catches up
            await injector.crash("root.slow")
            await wait_until(lambda: restarted(model), timeout=30, what="the restart")
            await wait_until(
                lambda: max((v for _, v in model.actors.rows["root.slow"].lag_series.points),
                            default=0) > 50,
                timeout=30, what="a lag spike",
            )  # fmt: skip
            reconnects = observer.reconnects
            await injector.restart_server()
            await wait_until(lambda: observer.reconnects > reconnects, timeout=30)
            await wf.wait_running()
            before = len(model.actors.rows["root.slow"].restarts)
            await injector.crash("root.slow")
            await fabric.publish("obs.in", {"i": 600})
            await wait_until(
                lambda: len(model.actors.rows["root.slow"].restarts) > before,
                timeout=30, what="the restart after the server's",
            )  # fmt: skip
            tg.cancel_scope.cancel()
    crashes = [i for i in model.incidents.timeline if i.kind == "crash" and i.who == "root.slow"]
    assert len(crashes) == 2  # one before the server restart, one after
    assert all(i.recovery_s is not None for i in crashes)  # each closed by the next start


async def test_a_watcher_reads_the_leaf_links_of_a_real_hub_from_its_monitoring_port() -> None:
    specs = [SiteSpec("edge", domain="edge", parent="hpc"), SiteSpec("hpc", domain="hpc")]
    async with Sites(specs) as sites, sites.fabric("hpc", events_stream=False) as fabric:
        hub = sites["hpc"].server
        assert hub is not None
        watcher = Watcher(fabric, monitors=[f"http://127.0.0.1:{hub.monitor_port}"])
        await watcher.poll_once()
        await anyio.sleep(0.2)
        await watcher.poll_once()
        (edge,) = watcher.model.snapshot()["sites"]
    assert (edge["name"], edge["state"], edge["linked"]) == ("edge", "up", True)
    assert edge["rtt_ms"] > 0
    assert edge["in_bytes_per_s"] is not None


def test_the_plots_keep_the_actors_with_the_most_lag_and_a_bounded_number_of_points() -> None:
    model = WorkflowModel()
    seq = 0
    for i in range(20):
        for k in range(400):
            seq += 1
            lag = Lag(name=f"root.a{i:02}", lag=i * 1000 + k)
            model.apply(Observed(seq=seq, time=1000.0 + k * 0.5, event=lag))
    series = model.snapshot(now=1200.0)["series"]
    assert sorted(series) == [f"root.a{i:02}" for i in range(12, 20)]  # the 8 most behind
    points = series["root.a19"]["lag"]
    assert len(points) == 150
    assert points[-1] == (1199.5, 19399)  # the newest is always kept


def test_top_shows_what_fits_the_screen_and_says_how_many_rows_are_hidden() -> None:
    from rich.console import Console

    from diaspora.observe._view import TopState, render

    model = WorkflowModel()
    for i in range(200):
        started = Started(name=f"root.a{i:03}", positions={"in": 0}, epoch=1, pid=i)
        model.apply(Observed(seq=i + 1, time=1.0, event=started))
    console = Console(width=160, record=True, height=50)
    console.print(render(model.snapshot(now=2.0), TopState(), height=50))
    text = console.export_text()
    assert "more rows: s sorts, / filters, p problems only" in text
    assert len(text.splitlines()) <= 50


def test_views_and_pools_appear_when_their_events_exist() -> None:
    from diaspora.events import Deficit, GroupCompleted, Healed
    from diaspora.observe._panels import render_panels

    model = WorkflowModel()
    empty = render_panels(model.snapshot(now=0.0))
    assert "no views seen" in empty["views"]
    assert "no pools seen" in empty["pools"]
    events = [
        GroupCompleted(name="root.frames", view="frames", completed=3, open_groups=2),
        Deficit(name="gpu", site="edge", have=1, want=2),
        Healed(name="gpu", site="edge", have=2, want=2, after_s=1.5),
    ]
    for seq, event in enumerate(events, 1):
        model.apply(Observed(seq=seq, time=10.0 + seq, event=event))
    panels = render_panels(model.snapshot(now=20.0))
    assert "completed=3" in panels["views"]
    assert "open_groups=2" in panels["views"]
    assert "edge" in panels["pools"]
    assert "healed" in panels["pools"]
    deficit = [i for i in model.snapshot()["timeline"] if i["kind"] == "deficit"]
    assert deficit[0]["recovery_s"] == 1.0
    assert model.snapshot()["sites"][0]["workers"] == "2/2"
