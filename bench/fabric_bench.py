"""Baselines: raw nats-py JetStream publish and pull-consume against the embedded server."""

from __future__ import annotations

import nats

from bench import raw
from bench.report import Report, Row
from diaspora.fabric import EmbeddedServer

SIZES = {"128B": 128, "256KiB": 256 * 1024}


async def run(report: Report, quick: bool) -> None:
    counts = {"128B": 20_000 if quick else 100_000, "256KiB": 400 if quick else 2_000}
    async with EmbeddedServer() as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream(timeout=10)
        for label, size in SIZES.items():
            n = counts[label]
            payload = b"x" * size
            await raw.fresh_stream(js, "BENCH", "bench")
            seconds = await raw.publish(js, "bench", payload, n, window=256)
            report.add(
                Row(
                    "baseline",
                    f"raw js publish {label}",
                    n / seconds,
                    "msg/s",
                    extra={"n": n, "mb_s": n * size / seconds / 1e6},
                )
            )
            report.add(
                Row("baseline", f"raw js publish {label} MB/s", n * size / seconds / 1e6, "MB/s")
            )
            seconds = await raw.consume(js, "bench", n, batch=500 if size < 4096 else 50)
            report.add(
                Row(
                    "baseline", f"raw js pull-consume {label}", n / seconds, "msg/s", extra={"n": n}
                )
            )
            report.add(
                Row(
                    "baseline",
                    f"raw js pull-consume {label} MB/s",
                    n * size / seconds / 1e6,
                    "MB/s",
                )
            )
        await nc.close()
