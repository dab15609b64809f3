"""Replay from a producer's history over request/reply, against reading JetStream with nats-py.

The same items (128 B and 256 KiB payloads) are read back both ways on one
embedded server: with fetch_history from a producer process serving its
reopened, disk-backed HistoryBuffer (as after a restart: every item comes
from its segments), and with a raw nats-py pull consumer over a file-backed
JetStream stream.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import anyio
import nats

from bench import raw
from bench.report import Report, Row
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric import headers as H
from diaspora.fabric.headers import ITEM
from diaspora.streams import HistoryBuffer, HistoryItem, fetch_history

SIZES = {"128B": 128, "256KiB": 256 * 1024}
PRODUCER = "bench.producer"
SUBJECT = "bench.streams"

_PRODUCER_PROCESS = """
import sys, anyio
from diaspora.fabric import Fabric
from diaspora.log import configure_logging
from diaspora.streams import HistoryBuffer, HistoryServer

async def main() -> None:
    url, directory, producer = sys.argv[1:4]
    configure_logging("WARNING")
    with HistoryBuffer(directory, max_bytes=4 * 1024**3, name=producer) as history:
        async with Fabric(url, name=producer, events_stream=False) as fabric:
            async with HistoryServer(fabric, producer, history):
                print("ready", flush=True)
                await anyio.to_thread.run_sync(sys.stdin.read)  # serve until stdin closes

anyio.run(main)
"""


async def run(report: Report, quick: bool) -> None:
    counts = {"128B": 20_000 if quick else 100_000, "256KiB": 400 if quick else 2_000}
    async with EmbeddedServer() as server, Fabric(server.url, events_stream=False) as fabric:
        nc = await nats.connect(server.url)
        js = nc.jetstream(timeout=10)
        for label, size in SIZES.items():
            n = counts[label]
            payload = b"x" * size

            await raw.fresh_stream(js, "BENCH_STREAMS", SUBJECT)
            await raw.publish(js, SUBJECT, payload, n, window=256)
            js_seconds = await raw.consume(js, SUBJECT, n, batch=500 if size < 4096 else 50)
            await js.delete_stream("BENCH_STREAMS")

            with tempfile.TemporaryDirectory() as directory:
                with HistoryBuffer(directory, max_bytes=4 * 1024**3, name="bench") as history:
                    for i in range(1, n + 1):
                        history.add(SUBJECT, i, payload, {H.ACTOR: PRODUCER, ITEM: str(i)})
                async with await anyio.open_process(
                    [sys.executable, "-c", _PRODUCER_PROCESS, server.url, directory, PRODUCER],
                    stderr=subprocess.DEVNULL,
                ) as producer:
                    assert producer.stdout is not None
                    assert producer.stdin is not None
                    ready = b""
                    while not ready.endswith(b"\n"):
                        ready += await producer.stdout.receive()
                    started = time.perf_counter()
                    got = nbytes = 0
                    async for x in fetch_history(fabric, PRODUCER, SUBJECT, 1, n, timeout=30):
                        assert isinstance(x, HistoryItem), x
                        got += 1
                        nbytes += len(x.payload)
                    seconds = time.perf_counter() - started
                    await producer.stdin.aclose()
            assert got == n
            assert nbytes == n * size

            report.add(
                Row(
                    "streams",
                    f"replay from history {label}",
                    n / seconds,
                    "msg/s",
                    baseline=f"raw js pull-consume {label}",
                    baseline_value=n / js_seconds,
                    extra={"n": n, "mb_s": n * size / seconds / 1e6},
                )
            )
            report.add(
                Row(
                    "streams",
                    f"replay from history {label} MB/s",
                    n * size / seconds / 1e6,
                    "MB/s",
                    baseline=f"raw js pull-consume {label} MB/s",
                    baseline_value=n * size / js_seconds / 1e6,
                )
            )
        await nc.close()
