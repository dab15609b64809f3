"""Supervision: restart latency, restarts per second, memory per idle actor.

- **restart latency**, crash → the restarted actor handling again, p50/p99:
  an in-process actor child that raises (baseline: raw nats-py re-creating a
  pull consumer at a sequence and fetching one message), and a process node
  SIGKILLed (baseline: spawning ``python`` that imports nats-py, connects and
  publishes one message), restarted in its parent's warm standby (the default;
  each kill waits until the standby is ready) and with ``standby=False`` (a new
  interpreter each time). Measured from the crash to the ``Diaspora-Emitted-At``
  stamp of the restarted actor's output.
- **restarts/s** a supervisor sustains with a trivial Runnable that crashes
  right after ``started()``.
- **memory per idle actor**: RSS growth of this process with 1,000 idle
  ``ActorRuntime`` children (real mailboxes on an embedded server) under one
  supervisor, divided by 1,000 (the server's own growth is reported in extra).
"""

from __future__ import annotations

import gc
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import nats
import psutil
from anyio.abc import TaskStatus
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.probe_actor import ECHOES, PROBES, Probe
from bench.report import Report, Row
from diaspora import Actor, Message, codec
from diaspora.events import Event, Restarted
from diaspora.fabric import EmbeddedServer, Fabric, Inbound, stream_name
from diaspora.fabric import headers as H
from diaspora.supervision import ChildSpec, Supervisor, SupervisorSpec
from diaspora.workflow import ProcessNode, actor_child
from diaspora.workflow._standby import standby_pool

GROUP = "supervision"


class _Echoes:
    """Emit stamps of the echoes seen on the output subject, by probe number."""

    def __init__(self) -> None:
        self.stamps: dict[int, float] = {}
        self._arrived = anyio.Event()

    async def on_msg(self, msg: Inbound) -> None:
        probe = codec.decode(msg.data)["probe"]
        self.stamps[probe] = float((msg.headers or {})[H.EMITTED_AT])
        arrived, self._arrived = self._arrived, anyio.Event()
        arrived.set()

    async def wait(self, probe: int, timeout: float = 60.0) -> float:
        with anyio.fail_after(timeout):
            while probe not in self.stamps:
                await self._arrived.wait()
        return self.stamps[probe]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50, p99


def _add_latency(
    report: Report, name: str, samples: list[float], baseline: str, base: list[float]
) -> None:
    p50, p99 = _percentiles(samples)
    b50, b99 = _percentiles(base)
    extra = {"n": len(samples), "baseline_n": len(base)}
    report.add(Row(GROUP, f"{name} p50", p50 * 1e3, "ms", f"{baseline} p50", b50 * 1e3, extra))
    report.add(Row(GROUP, f"{name} p99", p99 * 1e3, "ms", f"{baseline} p99", b99 * 1e3, extra))


async def _probe_tree(
    fabric: Fabric, spec: ChildSpec, n: int, crash: Any
) -> tuple[list[float], Supervisor]:
    """Run ``spec`` as child ``probe`` of a supervisor.

    ``await crash(sup, i)`` crashes it so that probe ``i`` is handled by the
    restarted actor, and returns a function giving the crash time (read once
    the probe's echo arrived).
    """
    echoes = _Echoes()
    sup = Supervisor(SupervisorSpec([spec], intensity=10_000, period=1.0), name="bench")
    samples: list[float] = []
    async with (
        fabric.subscription(ECHOES, echoes.on_msg, flush=True),
        anyio.create_task_group() as tg,
    ):
        await tg.start(sup.run)
        probe = 0
        await fabric.publish(PROBES, {"probe": probe})  # warm: started and handling
        await echoes.wait(probe)
        for _ in range(n):
            probe += 1
            crashed_at = await crash(sup, probe)
            echoed_at = await echoes.wait(probe)
            samples.append(echoed_at - crashed_at())
        sup.request_stop()
    return samples, sup


async def _actor_restarts(fabric: Fabric, n: int) -> list[float]:
    crashed: dict[int, float] = {}
    spec = actor_child("probe", Probe, fabric, args={"crashed": crashed})

    async def crash(sup: Supervisor, probe: int) -> Callable[[], float]:
        await fabric.publish(PROBES, {"probe": probe, "crash": probe})
        return lambda: crashed[probe]  # set by the actor before it raised

    samples, _ = await _probe_tree(fabric, spec, n, crash)
    return samples


async def _node_restarts(fabric: Fabric, n: int, *, standby: bool = True) -> list[float]:
    spec = actor_child("probe", Probe, fabric, process=True, standby=standby)

    async def crash(sup: Supervisor, probe: int) -> Callable[[], float]:
        if standby:  # a crash that comes when the last one's replacement is ready
            await standby_pool(fabric).wait_ready(120)
        (record,) = await sup.which_children()
        node = record.runnable
        assert isinstance(node, ProcessNode)
        assert node.pid is not None
        killed_at = time.time()
        os.kill(node.pid, signal.SIGKILL)
        await fabric.publish(PROBES, {"probe": probe})
        return lambda: killed_at

    samples, _ = await _probe_tree(fabric, spec, n, crash)
    return samples


async def _raw_consumer_restarts(url: str, n: int) -> list[float]:
    """Baseline: a new pull consumer at a sequence, fetch one message (what a resume needs)."""
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    stream = stream_name(PROBES)
    last = (await js.stream_info(stream)).state.last_seq
    samples = []
    for i in range(n):
        began = time.perf_counter()
        sub = await js.pull_subscribe(
            PROBES,
            durable=None,
            stream=stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=max(1, last - i),
                ack_policy=AckPolicy.NONE,
            ),
        )
        (msg,) = await sub.fetch(1, timeout=10)
        samples.append(time.perf_counter() - began)
        assert msg.data
        await sub.unsubscribe()
    await nc.close()
    return samples


_RAW_CHILD = """
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    await nc.publish("bench.spawned", b"up")
    await nc.flush()
    await nc.close()
asyncio.run(main())
"""


async def _raw_spawns(url: str, n: int) -> list[float]:
    """Baseline: spawn python, import nats-py, connect, publish one message."""
    nc = await nats.connect(url)
    arrived = anyio.Event()

    async def on_up(msg: Msg) -> None:
        arrived.set()

    await nc.subscribe("bench.spawned", cb=on_up)
    samples = []
    for _ in range(n):
        arrived = anyio.Event()
        began = time.perf_counter()
        proc = await anyio.open_process(
            [sys.executable, "-c", _RAW_CHILD, url], stdout=subprocess.DEVNULL
        )
        with anyio.fail_after(30):
            await arrived.wait()
        samples.append(time.perf_counter() - began)
        await proc.wait()
    await nc.close()
    return samples


class _Flaky:
    """Crashes right after ``started()``."""

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        raise RuntimeError("flaky")

    def request_stop(self) -> None:
        pass


class _CountRestarts:
    """An event sink counting restarts; it "logs" events itself, so the supervisor does not."""

    logs_events = True

    def __init__(self, until: int) -> None:
        self.until = until
        self.restarted = 0
        self.done = anyio.Event()

    async def emit(self, event: Event) -> None:
        if isinstance(event, Restarted):
            self.restarted += 1
            if self.restarted >= self.until:
                self.done.set()


async def _restarts_per_second(n: int, period: float) -> float:
    sink = _CountRestarts(n)
    spec = SupervisorSpec([ChildSpec("flaky", _Flaky)], intensity=10**9, period=period)
    sup = Supervisor(spec, name="bench", on_event=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        began = time.perf_counter()
        await sink.done.wait()
        seconds = time.perf_counter() - began
        sup.request_stop()
    return sink.restarted / seconds


class Idle(Actor):
    """Consumes ``bench.idle``, where nothing is ever published."""

    inputs = ("bench.idle",)

    async def handle(self, msg: Message) -> None:
        pass


def _rss(pid: int | None = None) -> int:
    rss: int = psutil.Process(pid).memory_info().rss
    return rss


async def _idle_memory(report: Report, n: int) -> None:
    async with EmbeddedServer() as server, Fabric(server.url, name="bench-idle") as fabric:
        await fabric.ensure_stream("bench.idle")
        server_pid = server.pid
        spec = SupervisorSpec([actor_child(f"a{i}", Idle, fabric) for i in range(n)])
        sup = Supervisor(spec, name="idle")
        # one actor first, so that imports and first-use allocations are not counted
        warm = Supervisor(SupervisorSpec([actor_child("warm", Idle, fabric)]), name="warm")
        async with anyio.create_task_group() as tg:
            await tg.start(warm.run)
            gc.collect()
            await anyio.sleep(1.0)
            before, server_before = _rss(), _rss(server_pid)
            began = time.perf_counter()
            await tg.start(sup.run)
            start_s = time.perf_counter() - began
            await anyio.sleep(2.0)  # idle: pull requests parked, lag reporters asleep
            gc.collect()
            after, server_after = _rss(), _rss(server_pid)
            sup.request_stop()
            warm.request_stop()
    report.add(
        Row(
            GROUP,
            f"RSS per idle actor ({n} actors)",
            (after - before) / n / 1024,
            "KiB",
            extra={
                "actors": n,
                "rss_delta_mb": (after - before) / 2**20,
                "server_rss_delta_kib_per_actor": (server_after - server_before) / n / 1024,
                "start_all_s": start_s,
            },
        )
    )
    report.add(Row(GROUP, f"start {n} actor children", start_s, "s"))
    report.add(
        Row(
            GROUP,
            f"nats-server RSS per idle actor ({n})",
            (server_after - server_before) / n / 1024,
            "KiB",
        )
    )


async def node_restart_rows(report: Report, server: EmbeddedServer, fabric: Fabric, n: int) -> None:
    """Process-node restarts after ``kill -9``, with and without the standby, and the
    spawn baseline, in the same run."""
    await fabric.ensure_stream(PROBES)
    warm = await _node_restarts(fabric, n)
    cold = await _node_restarts(fabric, n, standby=False)
    spawn_base = await _raw_spawns(server.url, n)
    for name, samples in (("", warm), (", standby off", cold)):
        _add_latency(
            report,
            f"restart latency, process node (kill -9){name}",
            samples,
            "raw spawn+import+connect",
            spawn_base,
        )


async def run(report: Report, quick: bool) -> None:
    async with EmbeddedServer() as server, Fabric(server.url, name="bench") as fabric:
        await fabric.ensure_stream(PROBES)
        actor_samples = await _actor_restarts(fabric, 10 if quick else 50)
        base = await _raw_consumer_restarts(server.url, 10 if quick else 50)
        _add_latency(
            report, "restart latency, actor child", actor_samples, "raw new consumer+fetch", base
        )
        await node_restart_rows(report, server, fabric, 3 if quick else 15)
    n = 5_000 if quick else 50_000
    for period in (0.01, 5.0):
        rate = await _restarts_per_second(n, period)
        report.add(Row(GROUP, f"restarts/s, trivial Runnable (period {period:g}s)", rate, "1/s"))
    await _idle_memory(report, 200 if quick else 1_000)
