"""Bridges between sites: throughput, latency, and resume after outages and restarts.

An edge (domain ``edge``) is a leaf of a hub (``hpc``) through a link proxy
(the rig of ``tests/fabric/leafrig.py``); a cloud (``cloud``) is the hub's
leaf for the two-hop rows. Rows:

- throughput edge → hub through an up bridge (edge publishes, the hub's copy
  complete) against a hub client publishing to a hub stream, same run;
- end-to-end latency p50/p99 at 200 msg/s, one hop (edge → hub) and two
  (edge → hub → cloud), against a direct publish to a hub stream consumed
  at the hub;
- after a link cut of 5 s and 25 s (60 s without ``--quick``, as the issue
  asks, when ``BRIDGES_LONG=1``) at 1,000 msg/s: resume (link back → first
  new message at the hub) and drain (→ all of them), for the shipped
  bridge (BYO durable consumer) and a server-managed source;
- after a hub and an edge restart: link back → all messages at the hub.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from bench import raw
from bench.report import Report, Row
from diaspora.fabric import Bridge, Fabric, ensure_bridge
from diaspora.testing import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fabric"))
from leafrig import LeafRig, leaf_rig, publish_numbers, wait_domain

GROUP = "bridges"
SIZES = {"128B": 128, "256KiB": 256 * 1024}


async def _quiet(exc: Exception) -> None:
    """nats-py's default error callback prints every failed reconnect while a server restarts."""


async def _connect(url: str) -> NATS:
    return await nats.connect(
        url, error_cb=_quiet, max_reconnect_attempts=-1, reconnect_time_wait=0.05
    )


async def _count(js: JetStreamContext, stream: str) -> int:
    try:
        return int((await js.stream_info(stream)).state.messages)
    except Exception:
        return 0


async def _wait_count(js: JetStreamContext, stream: str, n: int, timeout: float = 300) -> float:
    """Seconds until ``stream`` holds ``n`` messages (polled every 10 ms)."""
    started = time.perf_counter()

    async def reached() -> bool:
        return await _count(js, stream) >= n

    await wait_until(reached, timeout=timeout, interval=0.01)
    return time.perf_counter() - started


async def _throughput(report: Report, rig: LeafRig, quick: bool) -> None:
    counts = {"128B": 10_000 if quick else 50_000, "256KiB": 200 if quick else 1_000}
    nc_hub = await _connect(rig.hub.url)
    nc_edge = await _connect(rig.edge.url)
    js_hub, js_edge = nc_hub.jetstream(timeout=10), nc_edge.jetstream(timeout=10)
    async with Fabric(rig.hub.url, name="bench-hub", events_stream=False) as hub:
        for label, size in SIZES.items():
            n, payload = counts[label], b"x" * size
            window = 2000 if size < 4096 else 64
            await raw.fresh_stream(js_hub, f"HUB_{label}", f"hpc.direct.{label}")
            direct = await raw.publish(js_hub, f"hpc.direct.{label}", payload, n, window)
            subject = f"edge.tp.{label}"
            await js_edge.add_stream(name=subject.replace(".", "_"), subjects=[subject])
            bridge = Bridge(subject, "edge", "hpc")
            await ensure_bridge(hub, bridge)
            started = time.perf_counter()
            acked = await raw.publish(js_edge, subject, payload, n, window)
            await _wait_count(js_hub, bridge.stream, n)
            bridged = time.perf_counter() - started
            report.add(
                Row("baseline", f"hub publish, direct {label}", n / direct, "msg/s", extra={"n": n})
            )
            report.add(
                Row(
                    GROUP,
                    f"edge -> hub via bridge {label}",
                    n / bridged,
                    "msg/s",
                    baseline=f"hub publish, direct {label}",
                    baseline_value=n / direct,
                    extra={
                        "n": n,
                        "mb_s": n * size / bridged / 1e6,
                        "edge_acked_msg_s": n / acked,
                    },
                )
            )
    await nc_hub.close()
    await nc_edge.close()


async def _latencies(
    publish_url: str, publish_subject: str, read_url: str, stream: str, n: int
) -> list[float]:
    """``n`` stamped messages at 200 msg/s; latency (ms) to an ordered consumer of ``stream``."""
    nc_pub, nc_read = await _connect(publish_url), await _connect(read_url)
    js_pub, js_read = nc_pub.jetstream(), nc_read.jetstream()
    got: list[float] = []
    done = anyio.Event()

    async def on_msg(msg: Any) -> None:
        got.append((time.time() - float(msg.data.decode())) * 1000)
        if len(got) >= n:
            done.set()

    sub = await js_read.subscribe(
        "", stream=stream, cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    await anyio.sleep(0.3)
    for _ in range(n):
        await js_pub.publish(publish_subject, f"{time.time():.6f}".encode())
        await anyio.sleep(1 / 200)
    with anyio.fail_after(60):
        await done.wait()
    await sub.unsubscribe()
    await nc_pub.close()
    await nc_read.close()
    return got


def _pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1]


async def _latency(report: Report, rig: LeafRig, quick: bool) -> None:
    n = 300 if quick else 1_000
    assert rig.cloud is not None
    nc = await _connect(rig.hub.url)
    js_hub = nc.jetstream()
    await raw.fresh_stream(js_hub, "HUB_LAT", "hpc.lat")
    direct = await _latencies(rig.hub.url, "hpc.lat", rig.hub.url, "HUB_LAT", n)
    nc_edge = await _connect(rig.edge.url)
    await nc_edge.jetstream().add_stream(name="edge_lat", subjects=["edge.lat"])
    async with Fabric(rig.hub.url, name="bench-hub", events_stream=False) as hub:
        await ensure_bridge(hub, Bridge("edge.lat", "edge", "hpc"))
        await ensure_bridge(hub, Bridge("edge.lat", "hpc", "cloud"))
    one = await _latencies(rig.edge.url, "edge.lat", rig.hub.url, "edge_lat", n)
    two = await _latencies(rig.edge.url, "edge.lat", rig.cloud.url, "edge_lat", n)
    for p in (50, 99):
        base = f"hub publish -> hub consumer p{p}"
        report.add(Row("baseline", base, _pct(direct, p), "ms", extra={"n": n}))
        for hops, values in (("1 hop", one), ("2 hops", two)):
            report.add(
                Row(
                    GROUP,
                    f"latency edge -> {'hub' if hops == '1 hop' else 'cloud'} ({hops}) p{p}",
                    _pct(values, p),
                    "ms",
                    baseline=base,
                    baseline_value=_pct(direct, p),
                    extra={"n": n, "rate": 200},
                )
            )
    await nc.close()
    await nc_edge.close()


async def _outage(rig: LeafRig, outage: float, byo: bool, tag: str) -> tuple[float, float, int]:
    """1,000 msg/s at the edge, the link cut for ``outage`` s, then healed.

    Returns (resume s, drain s, messages): link back → first new message at
    the hub, and → the whole backlog there.
    """
    subject = f"edge.out.{tag}"
    nc_hub, nc_edge = await _connect(rig.hub.url), await _connect(rig.edge.url)
    js_hub = nc_hub.jetstream()
    await nc_edge.jetstream().add_stream(name=subject.replace(".", "_"), subjects=[subject])
    bridge = Bridge(subject, "edge", "hpc", byo_consumer=byo)
    async with Fabric(rig.hub.url, name="bench-hub", events_stream=False) as hub:
        await ensure_bridge(hub, bridge)
    await publish_numbers(rig.edge.url, subject, 0, 2_000, rate=1000)
    rig.proxy.cut()
    # the outage: the edge keeps publishing at 1,000 msg/s into its own stream
    await publish_numbers(rig.edge.url, subject, 2_000, 2_000 + int(1000 * outage), rate=1000)
    total = 2_000 + int(1000 * outage)
    before = await _count(js_hub, bridge.stream)
    rig.proxy.heal()
    healed = time.perf_counter()

    async def moved() -> bool:
        return await _count(js_hub, bridge.stream) > before

    await wait_until(moved, timeout=300, interval=0.01)
    resumed = time.perf_counter()
    await _wait_count(js_hub, bridge.stream, total)
    drained = time.perf_counter()
    await nc_hub.close()
    await nc_edge.close()
    return resumed - healed, drained - healed, total


async def _restart(rig: LeafRig, which: str, byo: bool, tag: str) -> float:
    """Seconds from the restarted server being ready to all 2,000 messages at the hub."""
    subject = f"edge.rs.{tag}"
    nc_edge = await _connect(rig.edge.url)
    await nc_edge.jetstream().add_stream(name=subject.replace(".", "_"), subjects=[subject])
    await nc_edge.close()
    bridge = Bridge(subject, "edge", "hpc", byo_consumer=byo)
    async with Fabric(rig.hub.url, name="bench-hub", events_stream=False) as hub:
        await ensure_bridge(hub, bridge)
    await publish_numbers(rig.edge.url, subject, 0, 1_000)
    nc_hub = await _connect(rig.hub.url)
    js_hub = nc_hub.jetstream()
    await _wait_count(js_hub, bridge.stream, 1_000)
    server = rig.hub if which == "hub" else rig.edge
    await server.stop()
    if which == "hub":
        await publish_numbers(rig.edge.url, subject, 1_000, 2_000)
    await server.start()
    ready = time.perf_counter()
    if which == "edge":
        await publish_numbers(rig.edge.url, subject, 1_000, 2_000)
    await _wait_count(js_hub, bridge.stream, 2_000, timeout=180)
    took = time.perf_counter() - ready
    await nc_hub.close()
    await wait_domain(rig.hub.url, "edge")
    return took


async def run(report: Report, quick: bool) -> None:
    async with leaf_rig(cloud_domain="cloud") as rig:
        await _throughput(report, rig, quick)
        await _latency(report, rig, quick)
    outages = [5.0] if quick else [5.0, 25.0]
    if os.environ.get("BRIDGES_LONG"):
        outages.append(60.0)
    for outage in outages:
        results: dict[bool, tuple[float, float, int]] = {}
        for byo in (False, True):
            async with leaf_rig() as rig:
                results[byo] = await _outage(rig, outage, byo, f"o{int(outage)}{int(byo)}")
        managed, shipped = results[False], results[True]
        for i, what in ((0, "resume"), (1, "drain")):
            base = f"{what} after {outage:.0f} s cut, server-managed source"
            report.add(Row("baseline", base, managed[i], "s", extra={"n": managed[2]}))
            report.add(
                Row(
                    GROUP,
                    f"{what} after {outage:.0f} s cut, bridge (BYO consumer)",
                    shipped[i],
                    "s",
                    baseline=base,
                    baseline_value=managed[i],
                    extra={"n": shipped[2], "rate": 1000},
                )
            )
    for which in ("hub", "edge"):
        took: dict[bool, float] = {}
        for byo in (False, True):
            async with leaf_rig() as rig:
                took[byo] = await _restart(rig, which, byo, f"{which}{int(byo)}")
        base = f"{which} restart -> all at hub, server-managed source"
        report.add(Row("baseline", base, took[False], "s"))
        report.add(
            Row(
                GROUP,
                f"{which} restart -> all at hub, bridge (BYO consumer)",
                took[True],
                "s",
                baseline=base,
                baseline_value=took[False],
            )
        )


if __name__ == "__main__":  # python -m bench.bridges_bench [--quick]
    from diaspora.log import configure_logging

    configure_logging("WARNING")
    rep = Report()
    anyio.run(run, rep, "--quick" in sys.argv)
    print(rep.table())
