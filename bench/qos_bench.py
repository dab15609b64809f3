"""QoS policies under a consumer slowdown: end-to-end latency, lag over time, and a plot.

A source emits at a fixed rate; its consumer handles each item in no time,
except during a slowdown window when it handles at a quarter of the rate.
One run per policy of the stream's QoS (max lag 100 items): none (no QoS),
block, decimate(4), aggregate(4), drop_oldest, scale_out(8) (8 partitions, one
per key: at a quarter of the rate, it takes more than 4 replicas to drain the lag).
Each row gives the end-to-end latency (emit to handle) p50/p99 and the
largest lag; ``bench/qos_lag.png`` plots the lag over time per policy. The
baseline is raw nats-py at the same rate with no slowdown (publish, pull,
latency from a timestamp in the payload), measured in the same run.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import nats
import numpy as np
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.report import Report, Row
from diaspora import Actor, ActorRuntime, Message, codec
from diaspora.compute._scaleout import ScaleOutGroup
from diaspora.fabric import EmbeddedServer, Fabric, stream_name
from diaspora.streams import OverloadPolicy, QosSpec, declare_qos

RATE = 200.0
MAX_LAG = 100
SUBJECT = "bench.qos"
KEYS = 8
PLOT = Path("bench/qos_lag.png")


@dataclass
class Clock:
    """Shared by source, sink and sampler: when the slowdown is on, and what was seen."""

    slow: bool = False
    latencies: list[float] = field(default_factory=list)
    handled: int = 0


class PacedSource(Actor):
    checkpoint_every = 500

    def __init__(self, clock: Clock) -> None:
        self.clock, self.n = clock, 0

    async def produce(self) -> None:
        started = time.monotonic()
        while True:
            self.n += 1
            await self.emit(
                SUBJECT, {"t": time.time(), "n": self.n}, item=self.n, key=f"k{self.n % KEYS}"
            )
            await anyio.sleep(max(0.0, started + self.n / RATE - time.monotonic()))


class SlowSink(Actor):
    inputs = (SUBJECT,)
    checkpoint_every = 500

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    async def handle(self, msg: Message) -> None:
        if self.clock.slow:
            await anyio.sleep(4 / RATE)
        self.clock.latencies.append(time.time() - msg.data["t"])
        self.clock.handled += 1


async def _raw_latency(url: str, seconds: float) -> list[float]:
    """Raw nats-py: publish at RATE with a timestamp, pull-consume, latency per message."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    with contextlib.suppress(Exception):
        await js.delete_stream("RAWQOS")
    await js.add_stream(name="RAWQOS", subjects=["raw.qos"])
    sub = await js.pull_subscribe(
        "raw.qos",
        durable=None,
        config=ConsumerConfig(ack_policy=AckPolicy.ALL, deliver_policy=DeliverPolicy.ALL),
    )
    latencies: list[float] = []
    n = int(seconds * RATE)

    async def produce() -> None:
        started = time.monotonic()
        for i in range(n):
            await js.publish("raw.qos", codec.encode({"t": time.time(), "n": i}))
            await anyio.sleep(max(0.0, started + (i + 1) / RATE - time.monotonic()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        while len(latencies) < n:
            try:
                msgs = await sub.fetch(64, timeout=1)
            except nats.errors.TimeoutError:
                continue
            now = time.time()
            latencies += [now - codec.decode(m.data)["t"] for m in msgs]
            await msgs[-1].ack()
    await nc.close()
    return latencies


async def _run_policy(
    fabric: Fabric,
    label: str,
    policy: OverloadPolicy | None,
    seconds: float,
    state: str,
    *,
    slowdown: bool = True,
) -> tuple[list[float], list[tuple[float, int]], int]:
    """One run: (latencies, lag samples (t, lag), items handled)."""
    with contextlib.suppress(Exception):
        await fabric.js.delete_stream(stream_name(SUBJECT))
    await fabric.ensure_stream(SUBJECT)
    kv = await fabric.ensure_kv("diaspora-qos")
    if policy is None:
        with contextlib.suppress(Exception):
            await kv.delete(SUBJECT)
    else:
        await declare_qos(fabric, SUBJECT, QosSpec(rate=RATE, max_lag_items=MAX_LAG, policy=policy))
    clock = Clock()
    tag = label.replace("(", "").replace(")", "")
    source = ActorRuntime(
        PacedSource, fabric, id=f"qos.src.{tag}", args={"clock": clock}, state_dir=state
    )
    sink: Any
    if label.startswith("scale_out"):
        sink = ScaleOutGroup(
            SlowSink, fabric, id=f"qos.sink.{tag}", partitions=KEYS, args={"clock": clock}
        )
    else:
        sink = ActorRuntime(SlowSink, fabric, id=f"qos.sink.{tag}", args={"clock": clock})
    samples: list[tuple[float, int]] = []
    async with anyio.create_task_group() as tg:
        await tg.start(sink.run)
        await tg.start(source.run)
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            clock.slow = slowdown and 0.2 * seconds <= elapsed < 0.6 * seconds
            _, head = await fabric.stream_bounds(SUBJECT)
            if isinstance(sink, ScaleOutGroup):
                lag = await sink.lag()
            else:
                lag = max(0, head - sink.positions.get(SUBJECT, 0))
            samples.append((elapsed, lag))
            await anyio.sleep(0.1)
        source.request_stop()
        sink.request_stop()
    return clock.latencies, samples, clock.handled


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000 if values else float("nan")


async def run(report: Report, quick: bool) -> None:
    seconds = 6.0 if quick else 24.0
    policies: list[tuple[str, OverloadPolicy | None]] = [
        ("none", None),
        ("block", OverloadPolicy.block()),
        ("decimate(4)", OverloadPolicy.decimate(4)),
        ("aggregate(4)", OverloadPolicy.aggregate(4)),
        ("drop_oldest", OverloadPolicy.drop_oldest()),
        ("scale_out(8)", OverloadPolicy.scale_out(8)),
    ]
    curves: dict[str, list[tuple[float, int]]] = {}
    with tempfile.TemporaryDirectory() as state:
        async with EmbeddedServer() as server, Fabric(server.url, name="bench-qos") as fabric:
            raw = await _raw_latency(server.url, seconds / 2)
            base50 = report.add(
                Row("baseline", "raw nats-py latency p50 @200/s", _pct(raw, 50), "ms")
            )
            base99 = report.add(
                Row("baseline", "raw nats-py latency p99 @200/s", _pct(raw, 99), "ms")
            )
            # the actor pipeline with no slowdown, against the same baseline
            lat, _, _ = await _run_policy(
                fabric, "steady", None, seconds / 2, state, slowdown=False
            )
            report.add(
                Row(
                    "qos",
                    "actor latency p50 @200/s, no slowdown",
                    _pct(lat, 50),
                    "ms",
                    base50.name,
                    base50.value,
                )
            )
            report.add(
                Row(
                    "qos",
                    "actor latency p99 @200/s, no slowdown",
                    _pct(lat, 99),
                    "ms",
                    base99.name,
                    base99.value,
                )
            )
            for label, policy in policies:
                lat, samples, handled = await _run_policy(fabric, label, policy, seconds, state)
                curves[label] = samples
                report.add(
                    Row(
                        "qos",
                        f"{label}: latency p50 (slowdown)",
                        _pct(lat, 50),
                        "ms",
                        extra={"handled": handled, "seconds": seconds, "lag": samples},
                    )
                )
                report.add(Row("qos", f"{label}: latency p99 (slowdown)", _pct(lat, 99), "ms"))
                report.add(Row("qos", f"{label}: max lag", max(lag for _, lag in samples), "items"))
    _plot(curves, seconds)
    print(f"wrote {PLOT}")


def _plot(curves: dict[str, list[tuple[float, int]]], seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, samples in curves.items():
        ax.plot([t for t, _ in samples], [lag for _, lag in samples], label=label)
    ax.axvspan(0.2 * seconds, 0.6 * seconds, color="grey", alpha=0.15, label="consumer at 1/4")
    ax.axhline(MAX_LAG, color="black", linestyle=":", linewidth=1, label="max_lag_items")
    ax.set_xlabel("seconds")
    ax.set_ylabel("lag (items)")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylim(bottom=0)
    ax.set_title(f"Lag per QoS policy: producer at {RATE:.0f}/s, consumer slowed 4x")
    ax.legend(fontsize=8)
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)
