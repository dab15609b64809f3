"""Resilient storage over five sites (a hub and four leaves, one nats-server each, leaf links).

Throughput rows: MB/s of ``Storage.put`` / ``Storage.get`` of one object per
layout, against the best single-site alternative in the same run: the
hub's JetStream object store (nats-py ``ObjectStore.put``; reads with the
fabric's chunk-subject reader, ``Fabric.read_object``, 15-50x faster than
``ObjectStore.get``). Overhead rows: bytes stored over all sites per byte.
Latency rows: p50/p99 of reading a 1 MiB object (one chunk) with every site
up and with one site's server killed, against ``read_object`` at the hub.
Repair rows: a site's server killed, its store wiped, restarted empty;
``Storage.repair()`` time and bytes (read + written) against the object's
size. Re-layout rows: hot chunks moved to replicas by ``Storage.adapt()``
after site a's link (the only one through a link proxy) drops to 2 MB/s; the bandwidth the
moves used as a share of the measured link bandwidth, against the
policy's ``relayout_share``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from tempfile import mkdtemp

from bench.report import Report, Row
from diaspora.fabric import Fabric, Sites, SiteSpec
from diaspora.storage import Policy, Storage, available_backends

MIB = 1024 * 1024
LEAVES = ("a", "b", "c", "d")
LAYOUTS = ("rep:2", "rep:3", "rs:3+2", "rs:4+1")


def _specs() -> list[SiteSpec]:
    return [SiteSpec("hub", domain="hub")] + [
        SiteSpec(s, domain=s, parent="hub", link_proxy=s == "a") for s in LEAVES
    ]


async def run(report: Report, quick: bool) -> None:
    state = Path(mkdtemp(prefix="diaspora-storage-bench-"))
    try:
        async with (
            Sites(_specs(), state_dir=state) as sites,
            sites.fabric("hub", events_stream=False) as fabric,
        ):
            await _throughput(report, fabric, sites, 8 * MIB if quick else 64 * MIB)
            await _latency(report, fabric, sites, 20 if quick else 100)
            await _repair(report, fabric, sites, 8 * MIB if quick else 32 * MIB)
            await _relayout(report, fabric, sites)
    finally:
        shutil.rmtree(state, ignore_errors=True)


async def _timed(work: object) -> float:
    started = time.perf_counter()
    await work  # type: ignore[misc]
    return time.perf_counter() - started


async def _throughput(report: Report, fabric: Fabric, sites: Sites, size: int) -> None:
    data = os.urandom(size)
    obs = await fabric.ensure_object_store("bench-plain")
    put_base = min([await _timed(obs.put(f"p{i}", data)) for i in range(2)])
    get_base = min([await _timed(fabric.read_object("bench-plain", "p1")) for _ in range(2)])
    mib = size // MIB
    base_put = report.add(
        Row("baseline", f"object store put {mib} MiB (hub)", size / put_base / 1e6, "MB/s")
    )
    base_get = report.add(
        Row("baseline", f"object store read {mib} MiB (hub)", size / get_base / 1e6, "MB/s")
    )
    codec_name = available_backends()[0]
    for layout in LAYOUTS:
        policy = Policy(layout=layout, small=0, lose=1)
        async with Storage(
            fabric, sites, bucket=f"b{layout.replace(':', '').replace('+', '_')}", policy=policy
        ) as store:
            puts = [await _timed(store.put(f"o{i}", data)) for i in range(2)]
            gets = [await _timed(store.get("o1")) for _ in range(2)]
            assert await store.get("o1") == data
            manifest = await store.stat("o1")
        extra = {"codec": codec_name, "chunk_size": policy.chunk_size, "sites": 5}
        report.add(
            Row(
                "storage",
                f"put {mib} MiB {layout}",
                size / min(puts) / 1e6,
                "MB/s",
                baseline=base_put.name,
                baseline_value=base_put.value,
                extra=extra,
            )
        )
        report.add(
            Row(
                "storage",
                f"get {mib} MiB {layout}",
                size / min(gets) / 1e6,
                "MB/s",
                baseline=base_get.name,
                baseline_value=base_get.value,
                extra=extra,
            )
        )
        report.add(Row("storage", f"overhead {layout}", manifest.stored / size, "x"))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _latency(report: Report, fabric: Fabric, sites: Sites, n: int) -> None:
    data = os.urandom(MIB)
    obs = await fabric.ensure_object_store("bench-plain")
    await obs.put("lat", data)
    base = [await _timed(fabric.read_object("bench-plain", "lat")) for _ in range(n)]
    b50 = report.add(
        Row("baseline", "object store read 1 MiB p50 (hub)", statistics.median(base) * 1e3, "ms")
    )
    b99 = report.add(
        Row("baseline", "object store read 1 MiB p99 (hub)", _pct(base, 0.99) * 1e3, "ms")
    )
    for layout in ("rep:3", "rs:3+2"):
        policy = Policy(layout=layout, small=0, lose=2, chunk_size=MIB)
        async with Storage(fabric, sites, bucket=f"lat{layout[:2]}", policy=policy) as store:
            await store.put("lat", data)
            for state in ("all up", "one site down"):
                if state == "one site down":
                    holder = next(
                        f.site
                        for f in (await store.stat("lat")).chunks[0].fragments
                        if f.site != "hub"
                    )
                    server = sites[holder].server
                    assert server is not None
                    await server.kill()
                times = [await _timed(store.get("lat")) for _ in range(n)]
                for q, base_row in ((0.5, b50), (0.99, b99)):
                    report.add(
                        Row(
                            "storage",
                            f"read 1 MiB {layout} p{int(q * 100)} {state}",
                            _pct(times, q) * 1e3,
                            "ms",
                            baseline=base_row.name,
                            baseline_value=base_row.value,
                        )
                    )
            server = sites[holder].server
            assert server is not None
            await server.start()
            await sites.wait_linked(holder)


async def _repair(report: Report, fabric: Fabric, sites: Sites, size: int) -> None:
    data = os.urandom(size)
    policy = Policy(layout="rs:3+2", small=0, lose=2)
    async with Storage(fabric, sites, bucket="repair", policy=policy) as store:
        await store.put("r", data)
        server = sites["a"].server
        assert server is not None
        await server.kill()
        shutil.rmtree(server.store_dir, ignore_errors=True)
        await server.start()
        await sites.wait_linked("a")
        store.sites.health["a"].down_until = 0.0
        result = await store.repair()
        assert await store.get("r") == data
    mib = size // MIB
    report.add(
        Row(
            "storage",
            f"repair a lost site, {mib} MiB rs:3+2",
            result.seconds,
            "s",
            extra={
                "rebuilt": result.rebuilt,
                "bytes_read": result.bytes_read,
                "bytes_written": result.bytes_written,
            },
        )
    )
    report.add(
        Row(
            "storage",
            "repair bytes moved per object byte, rs:3+2",
            (result.bytes_read + result.bytes_written) / size,
            "x",
        )
    )


async def _relayout(report: Report, fabric: Fabric, sites: Sites) -> None:
    policy = Policy(
        layout="rs:3+2",
        small=0,
        lose=2,
        chunk_size=MIB,
        hot_reads=2,
        latency_target=0.02,
        relayout_share=0.05,
    )
    async with Storage(fabric, sites, bucket="relayout", policy=policy) as store:
        data = os.urandom(8 * MIB)
        await store.put("h", data)
        proxy = sites["a"].proxy
        assert proxy is not None
        proxy.set_bandwidth(2_000_000)
        for _ in range(2):
            await store.get("h")
        result = await store.adapt()
        proxy.set_bandwidth(None)
        assert await store.get("h") == data
    assert result.rate_limit is not None
    link = result.rate_limit / policy.relayout_share
    used = result.bytes_moved / result.seconds / link
    report.add(
        Row(
            "storage",
            "re-layout bandwidth share (hot chunks to rep:3)",
            used * 100,
            "%",
            baseline="relayout_share",
            baseline_value=policy.relayout_share * 100,
            extra={
                "chunks": len(result.changed),
                "bytes": result.bytes_moved,
                "seconds": result.seconds,
                "link_Bps": link,
            },
        )
    )
