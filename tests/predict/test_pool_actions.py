"""A monitor's pool actions against a real server and real worker processes: ``scale:`` grows
a pool while the alert lasts and shrinks it back on the resolve; ``migrate:`` moves an actor
to another worker and back."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Sized
from typing import Any

import anyio
import pytest

from diaspora.compute import PoolController, PoolSpec, SiteQuota, migrate, scale_pool
from diaspora.errors import ConfigError, ControlError
from diaspora.events import MonitorAction, Retired, Scaled, decode_record
from diaspora.fabric import Fabric
from diaspora.predict import (
    AlertRule,
    Condition,
    MonitorSpec,
    ScaleAction,
    monitor_runtime,
    parse_action,
)
from diaspora.supervision import Supervisor
from diaspora.testing import read_stream, wait_until
from diaspora.workflow import parse_config
from diaspora.workflow._poolprocess import ProcessProvider
from tests.compute.migrate_actors import IN, OUT
from tests.compute.migrate_rig import counter_nodes, owner, standby_up

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def stored(fabric: Fabric, prefix: str) -> list[Any]:
    return [
        decode_record(m.data)
        for m in await read_stream(fabric, "diaspora.events.>")
        if m.subject.startswith(prefix)
    ]


async def test_an_alert_grows_a_pool_and_the_resolve_shrinks_it_back(fabric: Fabric) -> None:
    spec = PoolSpec("recon", {"hpc": SiteQuota(1, 3)})
    provider = ProcessProvider(fabric, path="root", heartbeat_timeout=2.0, standby=False)
    controller = PoolController(spec, provider, events=fabric, fabric=fabric)
    monitor = MonitorSpec(
        "backlog", "jobs.backlog", value="n", alert=AlertRule(Condition("value", ">", 100.0)),
        actions=(parse_action("scale:recon.hpc=+1", "actions[0]"),),
    )  # fmt: skip
    runtime = monitor_runtime(monitor, fabric)
    await fabric.ensure_stream("jobs.backlog")
    async with anyio.create_task_group() as tg:
        await tg.start(controller.run)
        with anyio.fail_after(60):
            await controller.ready.wait()
        (first,) = provider.pids("hpc")
        await tg.start(runtime.run)
        for n in (5, 8, 500):
            await fabric.publish("jobs.backlog", {"n": n})
        await wait_until(
            lambda: len(running(provider)) == 2, timeout=60, what="a second hpc worker running"
        )
        (added,) = set(provider.pids("hpc")) - {first}
        assert alive(added)
        await fabric.publish("jobs.backlog", {"n": 3})
        await wait_until(lambda: not alive(added), timeout=60, what="the added worker gone")
        await wait_until(lambda: len(controller.live("hpc")) == 1, timeout=30)
        assert provider.pids("hpc") == [first]  # the declared minimum's worker stayed
        runtime.request_stop()
        controller.request_stop()
    pool = await stored(fabric, "diaspora.events.pool.recon.")
    scaled = [(e.by, e.extra, e.want) for e in pool if isinstance(e, Scaled)]
    assert scaled == [("monitor backlog", 1, 2), ("monitor backlog", 0, 1)]
    (retired,) = [e for e in pool if isinstance(e, Retired)]
    assert (retired.site, retired.worker) == ("hpc", "recon-hpc-2")
    actions = await stored(fabric, "diaspora.events.monitor.backlog.action")
    assert [(a.phase, a.action, a.ok) for a in actions if isinstance(a, MonitorAction)] == [
        ("apply", "scale:recon.hpc=+1", True),
        ("revert", "scale:recon.hpc=+1", True),
    ]


def running(provider: ProcessProvider) -> list[int]:
    return [w.pid or 0 for w in provider.workers() if w.state.value == "running"]


async def test_a_scale_request_is_checked_and_repeats_have_one_effect(fabric: Fabric) -> None:
    spec = PoolSpec("recon", {"hpc": SiteQuota(1, 3)})
    provider = ProcessProvider(fabric, path="root", heartbeat_timeout=2.0, standby=False)
    controller = PoolController(spec, provider, fabric=fabric)
    with pytest.raises(ControlError, match=r"poolscale\.recon: nobody serves it"):
        await scale_pool(fabric, "recon", "hpc", 1, by="me", timeout=2)
    async with anyio.create_task_group() as tg:
        await tg.start(controller.run)
        assert await scale_pool(fabric, "recon", "hpc", 1, by="a", request="r1") == 2
        assert await scale_pool(fabric, "recon", "hpc", 1, by="a", request="r1") == 2  # a replay
        assert await scale_pool(fabric, "recon", "hpc", 1, by="a", request="r2") == 2  # replaces
        assert await scale_pool(fabric, "recon", "hpc", 5, by="b") == 3  # within the max
        assert await scale_pool(fabric, "recon", "hpc", 0, by="b") == 2
        with pytest.raises(ControlError, match=r"'edge' is not a site of the pool"):
            await scale_pool(fabric, "recon", "edge", 1, by="a")
        with pytest.raises(ControlError, match=r"extra: -1 must be"):
            await scale_pool(fabric, "recon", "hpc", -1, by="a")
        controller.request_stop()


FLOW = """
[supervisor]
strategy = "one_for_one"
[[supervisor.children]]
id = "sum"
actor = "diaspora.actor:Actor"

[pools.recon]
sites.hpc = { min = 1, max = 4 }

[[monitors]]
name = "backlog"
on = "jobs.backlog"
value = "n"
alert = { when = "value > 100" }
actions = ["scale:recon.hpc=+2"]
"""


def test_a_scale_action_is_checked_with_the_files_pools() -> None:
    tree = parse_config(FLOW, source="flow.toml")
    (monitor,) = [c for c in tree.spec.children if c.id == "monitor-backlog"]
    assert monitor.start.args["spec"].actions == (ScaleAction("recon", "hpc", 2),)
    cases = {
        "scale:recon.hpc=2": r"monitors\[0\] \(backlog\)\.actions\[0\]: 'scale:recon.hpc=2': "
        r"scale:<pool>\.<site>=\+<workers>",
        "scale:recon=+2": r"scale:<pool>\.<site>=\+<workers>",
        "scale:recon.hpc=+0": r"scale:<pool>\.<site>=\+<workers>",
        "scale:reco.hpc=+2": r"monitors\[0\] \(backlog\)\.actions\[0\]: scale:reco\.hpc: "
        r"no pool 'reco' in \[pools\] \(declared: recon\)",
        "scale:recon.edge=+2": r"\.actions\[0\]: scale:recon\.edge: 'edge' is not a site of "
        r"pool 'recon' \(its sites: hpc\)",
    }
    for action, error in cases.items():
        with pytest.raises(ConfigError, match=error):
            parse_config(FLOW.replace("scale:recon.hpc=+2", action), source="flow.toml")


async def test_an_alert_migrates_an_actor_and_the_resolve_moves_it_back_only_if_it_did(
    fabric: Fabric,
) -> None:
    await fabric.ensure_stream(IN)
    await fabric.ensure_stream("mover.load")
    sup = Supervisor(counter_nodes(fabric, intensity=5), name="root")
    monitor = MonitorSpec(
        "mover", "mover.load", value="load", alert=AlertRule(Condition("value", ">", 10.0)),
        actions=(parse_action("migrate:counter=b,a", "actions[0]"),),
    )  # fmt: skip
    runtime = monitor_runtime(monitor, fabric)

    async def at(worker: str) -> bool:
        other = "b" if worker == "a" else "a"
        return await owner(fabric) == worker and await standby_up(fabric, other)

    async def actions() -> list[MonitorAction]:
        found = await stored(fabric, "diaspora.events.monitor.mover.action")
        return [a for a in found if isinstance(a, MonitorAction)]

    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await wait_until(lambda: at("a"), timeout=60, what="counter on a, a standby on b")
        await tg.start(runtime.run)
        for x in range(5):
            await fabric.publish(IN, {"x": x}, msg_id=f"in:{x}")
        await fabric.publish("mover.load", {"load": 50})  # warning: migrate to b
        await wait_until(lambda: at("b"), timeout=60, what="counter moved to b")
        await fabric.publish("mover.load", {"load": 1})  # resolved: back to a
        await wait_until(lambda: at("a"), timeout=60, what="counter back on a")
        await wait_until(lambda: _count(actions(), 2), timeout=30)
        await migrate(fabric, "counter", to="b")  # moved by hand: the next warning cannot
        await wait_until(lambda: at("b"), timeout=60, what="counter on b")
        await fabric.publish("mover.load", {"load": 60})
        await fabric.publish("mover.load", {"load": 2})
        await wait_until(lambda: _count(actions(), 4), timeout=30)
        assert await at("b")  # the resolve did not move what the warning did not
        for x in range(5, 10):
            await fabric.publish(IN, {"x": x}, msg_id=f"in:{x}")
        await wait_until(lambda: _count(read_stream(fabric, OUT, missing_ok=True), 10), timeout=30)
        runtime.request_stop()
        sup.request_stop()
    done = [(a.phase, a.ok) for a in await actions()]
    assert done == [("apply", True), ("revert", True), ("apply", False), ("revert", True)]
    assert "already runs on worker 'b'" in ((await actions())[2].detail or "")
    out = [m.data for m in await read_stream(fabric, OUT)]
    assert [o["x"] for o in out] == list(range(10))  # each input once, in order, across moves
    assert [o["n"] for o in out] == list(range(1, 11))


async def _count(found: Awaitable[Sized], n: int) -> bool:
    return len(await found) >= n
