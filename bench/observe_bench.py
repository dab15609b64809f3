"""Observe: event-to-screen latency, the dashboard's cost on the fabric, how many actors it holds.

- **event-to-screen latency**: an injected crash (the message that triggers
  it is published at t0) until the dashboard's server-sent events carry a
  timeline with one more crash in it, p50/max over the trials. Baseline: a
  raw core-NATS subscriber on ``diaspora.events.actor.*.crashed`` in the same
  trial (what a hand-written watcher would see first).
- **the dashboard's cost**: ``diaspora dashboard`` as a process of its own,
  one page (an SSE reader) open, under a flood of synthetic typed events at
  a set rate: the events per second it consumes (from its ``/state``) and
  its CPU (percent of one core). Baseline: a raw nats-py process that
  subscribes to ``diaspora.events.>`` and msgpack-decodes each event, fed the
  same flood at the same time.
- **how many actors the views hold**: synthetic wire records for N actors
  (started, then checkpointed and lag events round-robin) folded in process:
  events/s of decode + fold (baseline: msgpack decoding alone), and the time
  to render one dashboard frame (snapshot, HTML panels, SVG plots) and one
  ``top`` frame at 1,000 (and, full run, 10,000) actors; with the fold rate
  that gives the share of a core the views need at 10,000 events/s and 4
  frames/s.
"""

from __future__ import annotations

import io
import json
import statistics
import sys
import textwrap
import time
from typing import Any

import anyio
import psutil

from bench.report import Report, Row
from diaspora import codec
from diaspora.events import Checkpointed, Crashed, Lag, Started, decode_record
from diaspora.fabric import EmbeddedServer, Fabric, Inbound
from diaspora.observe import Observed, Watcher, WorkflowModel
from diaspora.observe._dashboard import serve
from diaspora.observe._panels import render_panels
from diaspora.testing import Injector, Workflow
from diaspora.workflow import parse_config

GROUP = "observe"

TREE = """
[supervisor]
intensity = 100
period = 10.0

[[supervisor.children]]
id = "sum"
actor = "actors.examples:RunningSum"
"""

_RAW_SUBSCRIBER = textwrap.dedent(
    """
    import asyncio, sys, msgpack, nats
    async def main():
        nc = await nats.connect(sys.argv[1])
        count = 0
        async def on(msg):
            nonlocal count
            msgpack.unpackb(msg.data)
            count += 1
        await nc.subscribe("diaspora.events.>", cb=on)
        await nc.flush()
        print("ready", flush=True)
        while True:
            await asyncio.sleep(0.5)
            print(count, flush=True)
    asyncio.run(main())
    """
)


class _Frames:
    """The dashboard's server-sent frames as they arrive: ``(perf_counter, frame)``."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._arrived = anyio.Event()

    async def next(self) -> None:
        await self._arrived.wait()

    async def read(self, port: int) -> None:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buffer = b""
        while True:
            buffer += await stream.receive(1 << 20)
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                for line in block.split(b"\n"):
                    if line.startswith(b"data: "):
                        self.seen.append((time.perf_counter(), json.loads(line[6:])))
                        arrived, self._arrived = self._arrived, anyio.Event()
                        arrived.set()


def _crashes(frame: dict[str, Any]) -> int:
    return int(frame["panels"]["timeline"].count('data-kind="crash"'))


async def _latency(report: Report, quick: bool) -> None:
    trials = 3 if quick else 10
    sse_ms: list[float] = []
    raw_ms: list[float] = []
    async with EmbeddedServer() as server, Fabric(server.url, name="bench") as fabric:
        await fabric.ensure_stream("numbers")
        raw: list[float] = []

        async def on_crash(msg: Inbound) -> None:
            raw.append(time.perf_counter())

        async with (
            Workflow(parse_config(TREE), server.url, observer=fabric) as wf,
            Injector(fabric, server=server) as injector,
            Fabric(server.url, name="dash", events_stream=False) as observer,
            fabric.subscription("diaspora.events.actor.*.crashed", on_crash, flush=True),
            anyio.create_task_group() as tg,
        ):
            await wf.wait_running()
            ready, bound = anyio.Event(), list[int]()
            watcher = Watcher(observer)
            tg.start_soon(lambda: serve(watcher, port=0, ready=ready, bound=bound))
            await ready.wait()
            frames = _Frames()
            tg.start_soon(frames.read, bound[0])
            with anyio.fail_after(30):
                await frames.next()
            for trial in range(trials):
                await wf.wait_running()
                await anyio.sleep(0.5)
                before, raw_before = _crashes(frames.seen[-1][1]), len(raw)
                await injector.crash("root.sum")
                t0 = time.perf_counter()
                await fabric.publish("numbers", {"x": trial})
                with anyio.fail_after(30):
                    while not any(t > t0 and _crashes(f) > before for t, f in frames.seen):
                        await frames.next()
                t_sse = next(t for t, f in frames.seen if t > t0 and _crashes(f) > before)
                sse_ms.append((t_sse - t0) * 1000)
                raw_ms.append((raw[raw_before] - t0) * 1000)
            tg.cancel_scope.cancel()
    report.add(
        Row(GROUP, "crash to dashboard SSE frame (p50)", statistics.median(sse_ms), "ms",
            "raw NATS subscriber (p50)", statistics.median(raw_ms),
            extra={"trials_ms": [round(v, 1) for v in sse_ms],
                   "raw_ms": [round(v, 1) for v in raw_ms]})
    )  # fmt: skip
    report.add(Row(GROUP, "crash to dashboard SSE frame (max)", max(sse_ms), "ms",
                   "raw NATS subscriber (max)", max(raw_ms)))  # fmt: skip


def _records(actors: int, n: int, at: float = 1.0) -> list[bytes]:
    """``n`` wire records from Unix time ``at`` on: every actor started, then checkpoints
    and lags round-robin (10,000 a second)."""
    out = [
        codec.encode(Started(name=f"root.g{i % 10}.a{i}", positions={"in": 0}, epoch=1,
                             pid=1000 + i).record(at=at))
        for i in range(actors)
    ]  # fmt: skip
    for k in range(n - actors):
        i = k % actors
        name = f"root.g{i % 10}.a{i}"
        if k % 2:
            event: Any = Lag(name=name, lag=k % 500)
        else:
            event = Checkpointed(name=name, version=k, positions={"in": k}, handled=k, emitted=k)
        out.append(codec.encode(event.record(at=at + 1.0 + k / 10_000)))
    return out


def _scale(report: Report, quick: bool) -> None:
    n = 100_000 if quick else 300_000
    for actors in (1000,) if quick else (1000, 10_000):
        records = _records(actors, n)
        started = time.perf_counter()
        for payload in records:
            codec.decode(payload)
        decode_s = time.perf_counter() - started
        model = WorkflowModel()
        started = time.perf_counter()
        for seq, payload in enumerate(records, 1):
            record = codec.decode(payload)
            model.apply(Observed(seq=seq, time=record["time"], event=decode_record(record)))
        fold_s = time.perf_counter() - started
        model.apply(Observed(seq=n + 1, time=40.0, event=Crashed(name="root.g0.a0", reason="x")))
        frame_s, size = _timed(lambda m=model: render_panels(m.snapshot(now=41.0)))
        top_s, _ = _timed(lambda m=model: _top_frame(m))
        fold_rate = n / fold_s
        share = 10_000 / fold_rate + 4 * frame_s
        report.add(Row(GROUP, f"fold: events/s, {actors:,} actors", fold_rate, "ev/s",
                       "msgpack decode alone", n / decode_s))  # fmt: skip
        report.add(Row(GROUP, f"dashboard frame, {actors:,} actors", frame_s * 1000, "ms",
                       extra={"bytes": size}))  # fmt: skip
        report.add(Row(GROUP, f"top frame, {actors:,} actors", top_s * 1000, "ms"))
        report.add(Row(GROUP, f"core share at 10k ev/s + 4 frames/s, {actors:,}", share * 100,
                       "%", extra={"fold_s_per_10k": 10_000 / fold_rate}))  # fmt: skip


def _timed(work: Any) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(3):
        started = time.perf_counter()
        out = work()
        best = min(best, time.perf_counter() - started)
        size = len(json.dumps(out)) if isinstance(out, dict) else 0
    return best, size


def _top_frame(model: WorkflowModel) -> None:
    from rich.console import Console

    from diaspora.observe._view import TopState, render

    console = Console(file=io.StringIO(), width=200, height=60)  # what a screen shows
    console.print(render(model.snapshot(now=41.0, series=False), TopState(), height=60))


async def _flood(fabric: Fabric, rate: int, seconds: float) -> int:
    """Publish synthetic events at ``rate``/s for ``seconds``; how many were sent."""
    payloads = _records(100, 1000, at=time.time())
    sent, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            await fabric.publish_core("diaspora.events.actor.x.lag", payloads[sent % 1000])
            sent += 1
        await anyio.sleep(0.005)
    return sent


async def _cost(report: Report, quick: bool) -> None:
    rate, seconds = (2000, 3.0) if quick else (10_000, 8.0)
    async with EmbeddedServer() as server, Fabric(server.url, name="bench") as fabric:
        dash = await anyio.open_process(
            [sys.executable, "-m", "diaspora", "dashboard", "--url", server.url, "--port", "0",
             "--history", "0"],
            env={"DIASPORA_LOG_LEVEL": "WARNING", **_env()},
        )  # fmt: skip
        raw = await anyio.open_process([sys.executable, "-c", _RAW_SUBSCRIBER, server.url])
        try:
            port = await _dashboard_port(dash)
            assert raw.stdout is not None
            await raw.stdout.receive()  # "ready"
            frames = _Frames()
            async with anyio.create_task_group() as tg:
                tg.start_soon(frames.read, port)
                await anyio.sleep(1.0)
                procs = [psutil.Process(dash.pid), psutil.Process(raw.pid)]
                cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
                events0, raw0 = (await _state(port))["events"], await _raw_count(raw)
                sent = await _flood(fabric, rate, seconds)
                await anyio.sleep(0.5)
                cpu1 = [sum(p.cpu_times()[:2]) for p in procs]
                events1, raw1 = (await _state(port))["events"], await _raw_count(raw)
                tg.cancel_scope.cancel()
        finally:
            for proc in (dash, raw):
                proc.terminate()
                with anyio.move_on_after(5):
                    await proc.wait()
    span = seconds + 0.5
    dash_cpu, raw_cpu = ((b - a) / span * 100 for a, b in zip(cpu0, cpu1, strict=True))
    consumed = events1 - events0
    extra = {"sent": sent, "consumed": consumed, "frames": len(frames.seen),
             "sent_per_s": sent / seconds}  # fmt: skip
    report.add(Row(GROUP, f"dashboard consumes (offered {rate:,}/s)", consumed / seconds,
                   "ev/s", "raw subscriber consumes", (raw1 - raw0) / seconds,
                   extra=extra))  # fmt: skip
    report.add(Row(GROUP, f"dashboard CPU at {rate:,} ev/s", dash_cpu, "% core",
                   "raw subscriber + msgpack CPU", raw_cpu))  # fmt: skip
    # per event consumed: what bounds the rate a core sustains (the machine may starve both)
    per_event = dash_cpu / 100 * span / max(1, consumed) * 1e6
    raw_per_event = raw_cpu / 100 * span / max(1, raw1 - raw0) * 1e6
    report.add(Row(GROUP, "dashboard CPU per event consumed", per_event, "us",
                   "raw subscriber per event", raw_per_event))  # fmt: skip


async def _raw_count(raw: Any) -> int:
    """The raw subscriber's latest count (it prints one every 0.5 s)."""
    with anyio.fail_after(10):
        chunk = await raw.stdout.receive()
        while not chunk.endswith(b"\n"):  # a line cut in two: read on to its end
            chunk += await raw.stdout.receive()
    return int(chunk.split()[-1])


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "DIASPORA_URL"}


async def _dashboard_port(proc: Any) -> int:
    said = b""
    with anyio.fail_after(30):
        while b"\n" not in said.partition(b"diaspora dashboard: ")[2]:
            said += await proc.stderr.receive()
    url = said.partition(b"diaspora dashboard: ")[2].split()[0].decode()
    return int(url.rsplit(":", 1)[1].strip("/"))


async def _state(port: int) -> dict[str, Any]:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.send(b"GET /state HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    raw = b""
    with anyio.fail_after(10):
        while True:
            try:
                raw += await stream.receive(1 << 20)
            except anyio.EndOfStream:
                break
    result: dict[str, Any] = json.loads(raw.partition(b"\r\n\r\n")[2])
    return result


async def run(report: Report, quick: bool) -> None:
    await _latency(report, quick)
    await _cost(report, quick)
    _scale(report, quick)
