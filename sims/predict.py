"""Prediction, not only detection: a consumer whose capacity shrinks, and a monitor that acts first.

One run: a fresh nats-server; a producer publishing ``rate`` items/s to
``work`` (declared QoS: ``max_lag_items = bound``, overload policy
``decimate(4)``, so the consumer also switches by itself once the bound is
crossed); a consumer whose handle time grows from ``ramp_start`` on, its
capacity falling linearly from 2x to 0.4x the rate over ``ramp_s``
seconds (or staying at 2x in a run without a ramp); the built-in metrics
source sampling the server every 0.1 s; and a monitor on
``metrics.jsz.num_pending`` (the consumer's undelivered backlog), warning
when its EWMA/Holt forecast crosses 70 % of the bound within 2 s.

The **violation** is the time during which the consumer's lag (items
published but neither handled nor skipped) exceeds ``bound``, sampled every
50 ms by the driver. A run is in one of two modes:

- ``watch``: the monitor has no action, so the consumer sees exactly what it
  would without a monitor (its own reactive switch only); it gives the
  warning's **lead time** (first violation minus first warning), and its
  precision and recall over runs with and without a ramp (a run whose bound
  was violated is a positive, caught if the warning came first; a warning
  in a run never violated is a false alarm);
- ``act``: the monitor's action ``policy:work=decimate(4)`` switches the
  running consumer into decimation as soon as it warns, and back on resolve.

``python -m sims predict --seeds 5`` runs ``watch`` and ``act`` on seeded
ramps (and ``watch`` on as many runs without a ramp) and prints the table.
With ``--link`` the consumer keeps its capacity but reads ``uplink``
through a link proxy whose bandwidth falls from 10x to 0.4x what the (2 KB)
items need and whose latency rises to 50 ms over the ramp. An edge relay on
the producer's side of the link (actor ``edge``, reading ``work`` on the
local server, emitting each item to ``uplink``) is what crosses the link, so
the ``act`` action is ``policy:work=decimate(4)`` on the *relay's* input:
it forwards one item in four while warned, and the link carries a quarter
of the bytes (decimating at the far consumer would not: it still fetches
every item). The lag is then what the producer published minus what the
relay dropped and the consumer handled or skipped.
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import anyio

from diaspora import Actor, ActorRuntime, Message, codec
from diaspora.events import MonitorWarning, decode_record
from diaspora.fabric import EmbeddedServer, Fabric, LinkProxy
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.predict import MetricsSpec, MonitorSpec, metrics_runtime, monitor_runtime
from diaspora.streams._qos import OverloadPolicy, QosSpec
from diaspora.streams._registry import declare_qos
from diaspora.testing._streams import read_stream

__all__ = ["RampResult", "Summary", "run_ramp", "summarise"]

SUBJECT = "work"
#: what the edge relay sends over the link (``--link``)
UPLINK = "uplink"
#: seconds a warning of the link scenario lasts after its condition stops holding
KEEP_FOR = 1.0
#: bytes of padding per item when the link is the bottleneck
_PAD = 2000


@dataclass(frozen=True, slots=True)
class RampResult:
    """One run: when the monitor first warned and the bound was first violated (seconds
    from the start), for how long it was violated, and what the consumer did."""

    seed: int
    ramp: bool
    mode: str
    warned_at: float | None
    violated_at: float | None
    violation_s: float
    max_lag: int
    handled: int
    skipped: int
    published: int
    #: why the consumer (with ``link``: the edge relay) first switched into its policy
    #: ("forced by monitor backlog", or a bound)
    first_switch: str | None


class Shrinking(Actor):
    """A consumer whose capacity falls linearly once its ramp starts."""

    inputs = (SUBJECT,)
    max_in_flight = 8  # a small window: the consumer's backlog is the stream's num_pending
    batch_size = 4

    def __init__(self, start: float, ramp_start: float, ramp_s: float, rate: float, ramp: bool):
        self.start, self.ramp_start, self.ramp_s = start, ramp_start, ramp_s
        self.rate, self.ramp = rate, ramp

    def capacity(self) -> float:
        full = 2.0 * self.rate
        if not self.ramp:
            return full
        into = (time.monotonic() - self.start - self.ramp_start) / self.ramp_s
        return full - (full - 0.4 * self.rate) * min(max(into, 0.0), 1.0)

    async def handle(self, msg: Message) -> None:
        await anyio.sleep(1.0 / self.capacity())


class FarConsumer(Shrinking):
    """The consumer across the link (``--link``): it reads what the edge relay sent."""

    inputs = (UPLINK,)


class EdgeRelay(Actor):
    """On the producer's side of the link: forwards each item of ``work`` to ``uplink``."""

    inputs = (SUBJECT,)
    outputs = (UPLINK,)

    async def handle(self, msg: Message) -> None:
        await self.emit(UPLINK, msg.data)


def _monitor(bound: int, act: bool, link: bool = False) -> MonitorSpec:
    alert: dict[str, Any] = {"when": f"forecast > {0.7 * bound:g}", "for": 0.1, "horizon": 20}
    if link:  # the decimated link drains slowly: a resolve at once would undo the action early
        alert["keep_for"] = KEEP_FOR
    return MonitorSpec.from_mapping({
        "name": "backlog", "on": "metrics.jsz.num_pending", "key": "name", "value": "value",
        "time": "t", "resample": 0.1,
        "model": {"kind": "ewma_z", "alpha_f": 0.5, "beta_f": 0.3},
        "alert": alert,
        "actions": [f"policy:{SUBJECT}=decimate(4)"] if act else [],
    })  # fmt: skip


async def run_ramp(
    seed: int,
    *,
    mode: str = "act",
    ramp: bool = True,
    duration: float = 6.0,
    rate: float = 150.0,
    bound: int = 100,
    link: bool = False,
) -> RampResult:
    """One seeded run (see the module docstring); ``link``: the consumer keeps its capacity
    but reads through a link proxy whose bandwidth ramps down (and latency up)."""
    rng = random.Random(seed)
    ramp_start, ramp_s = rng.uniform(0.8, 1.5), rng.uniform(2.0, 3.0)
    async with (
        EmbeddedServer() as server,
        LinkProxy(server.port, seed=seed) as proxy,
        Fabric(server.url, name=f"sim-{seed}") as fabric,
        Fabric(proxy.url if link else server.url, name=f"sim-{seed}-consumer") as far,
    ):
        qos = QosSpec(max_lag_items=bound, policy=OverloadPolicy.decimate(4))
        for subject in (SUBJECT, UPLINK) if link else (SUBJECT,):
            await fabric.ensure_stream(subject)
            await declare_qos(fabric, subject, qos)
        start = time.monotonic()
        args = {
            "start": start,
            "ramp_start": ramp_start,
            "ramp_s": ramp_s,
            "rate": rate,
            "ramp": ramp and not link,
        }
        consumer = ActorRuntime(FarConsumer if link else Shrinking, far, id="consumer", args=args)
        relay = ActorRuntime(EdgeRelay, fabric, id="edge") if link else None
        url = f"http://127.0.0.1:{server.monitor_port}"
        source = metrics_runtime(MetricsSpec(url, period=0.1, endpoints=("jsz",)), fabric)
        monitor = monitor_runtime(_monitor(bound, act=mode == "act", link=link), fabric)
        published = [0]
        samples: list[tuple[float, int]] = []
        async with anyio.create_task_group() as tg:
            await tg.start(consumer.run)
            if relay is not None:
                await tg.start(relay.run)
            await tg.start(source.run)
            await tg.start(monitor.run)
            tg.start_soon(_produce, fabric, rate, duration, published, _PAD if link else 0)
            while (now := time.monotonic() - start) < duration:
                lag = published[0] - consumer.stats.handled - consumer.stats.skipped
                lag -= relay.stats.skipped if relay is not None else 0
                samples.append((now, lag))
                if link and ramp:  # from 10x what the items need down to 0.4x, latency up to 50 ms
                    into = min(max((now - ramp_start) / ramp_s, 0.0), 1.0)
                    need = rate * _PAD
                    proxy.set_bandwidth(need * (10.0 - 9.6 * into))
                    proxy.set_latency(0.05 * into)
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        events = await read_stream(fabric, "diaspora.events.>")
        warnings = [
            decode_record(m.data)
            for m in events
            if m.subject == "diaspora.events.monitor.backlog.warning"
        ]
        switcher = "edge" if link else "consumer"  # whose first switch the result reports
        switches = [
            m.data["reason"]
            for m in events
            if m.subject == f"diaspora.events.actor.{switcher}.policy_on"
        ]
    wall_start = time.time() - (time.monotonic() - start)
    warned = [w.at - wall_start for w in warnings if isinstance(w, MonitorWarning)]
    over = [(t, lag) for t, lag in samples if lag > bound]
    return RampResult(
        seed, ramp, mode, min(warned) if warned else None, over[0][0] if over else None,
        0.05 * len(over), max((lag for _, lag in samples), default=0),
        consumer.stats.handled,
        consumer.stats.skipped + (relay.stats.skipped if relay is not None else 0), published[0],
        switches[0] if switches else None,
    )  # fmt: skip


async def _produce(
    fabric: Fabric, rate: float, duration: float, published: list[int], pad: int
) -> None:
    start = time.monotonic()
    async with OrderedPublisher(fabric, name="producer") as pub:
        while time.monotonic() - start < duration:
            due = int((time.monotonic() - start) * rate)
            while published[0] < due:
                n = published[0]
                item = {"i": n, "pad": b"x" * pad}
                await pub.publish(SUBJECT, codec.encode(item), msg_id=f"work:{n}")
                published[0] += 1
            await pub.flush()
            await anyio.sleep(0.01)


@dataclass(frozen=True, slots=True)
class Summary:
    """Over seeds: lead time, precision and recall of the warnings, violation cut by acting."""

    runs: int
    lead_s: list[float]
    precision: float | None
    recall: float | None
    violation_watch_s: float
    violation_act_s: float | None  # None: no ``act`` run
    max_lag_watch: float
    max_lag_act: float | None

    def table(self) -> str:
        lead = "-"
        if self.lead_s:
            lead = f"{statistics.mean(self.lead_s):.2f} s (min {min(self.lead_s):.2f})"

        def pct(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"

        lines = [
            f"runs {self.runs}: lead time {lead}, precision {pct(self.precision)}, "
            f"recall {pct(self.recall)}",
            f"violation (lag > bound) without action: {self.violation_watch_s:.2f} s, "
            f"mean max lag {self.max_lag_watch:.0f}",
        ]
        if self.violation_act_s is not None:
            cut = "-"
            if self.violation_watch_s:
                cut = f"{1 - self.violation_act_s / self.violation_watch_s:.0%}"
            lines.append(
                f"with the pre-emptive decimate: {self.violation_act_s:.2f} s (cut {cut}), "
                f"mean max lag {self.max_lag_act:.0f}"
            )
        return "\n".join(lines)


def summarise(results: list[RampResult]) -> Summary:
    """From the ``watch`` runs: a run whose bound was violated is a positive, caught if the
    monitor warned before the violation; a warning in a run never violated is a false
    alarm. Violation times by mode, over the ramps."""
    watch = [r for r in results if r.mode == "watch"]
    positives = [r for r in watch if r.violated_at is not None]
    caught = [r for r in positives if r.warned_at is not None and r.warned_at < r.violated_at]  # type: ignore[operator]
    false = [r for r in watch if r.violated_at is None and r.warned_at is not None]
    tp, fp = len(caught), len(false)
    lead = [r.violated_at - r.warned_at for r in caught]  # type: ignore[operator]
    act = [r.violation_s for r in results if r.mode == "act" and r.ramp]
    base = [r.violation_s for r in watch if r.ramp]
    return Summary(
        len(results), lead,
        tp / (tp + fp) if tp + fp else None, tp / len(positives) if positives else None,
        statistics.mean(base) if base else 0.0, statistics.mean(act) if act else None,
        statistics.mean(r.max_lag for r in watch if r.ramp) if base else 0.0,
        statistics.mean(r.max_lag for r in results if r.mode == "act" and r.ramp) if act else None,
    )  # fmt: skip


async def run_seeds(
    seeds: int, duration: float = 6.0, *, link: bool = False
) -> tuple[list[RampResult], Summary]:
    """``watch`` and ``act`` on ``seeds`` ramps, ``watch`` on as many runs without one
    (``link``: the degrading link, the action at the edge relay)."""
    plan = (("watch", True), ("act", True), ("watch", False))
    results = []
    for seed in range(1, seeds + 1):
        for mode, ramp in plan:
            results.append(await run_ramp(seed, mode=mode, ramp=ramp, duration=duration, link=link))
    return results, summarise(results)


def as_rows(results: list[RampResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


async def main(seeds: int, link: bool = False) -> int:
    """``python -m sims predict --seeds N [--link]``: every run, then the summary."""
    results, summary = await run_seeds(seeds, link=link)
    for r in results:
        warned = "-" if r.warned_at is None else f"{r.warned_at:.2f}"
        violated = "-" if r.violated_at is None else f"{r.violated_at:.2f}"
        print(f"seed {r.seed} ramp={r.ramp!s:<5} {r.mode:<5} warned {warned:>5}  violated "
              f"{violated:>5}  violation {r.violation_s:.2f} s  max lag {r.max_lag}  "
              f"first switch: {r.first_switch}")  # fmt: skip
    print(summary.table())
    return 0
