"""A pass-through actor against raw nats-py doing the same consume+publish loop, and catch-up.

Both read the same pre-filled stream of encoded payloads on one embedded
server and publish every message to a sink stream: raw nats-py with
``fetch`` + ``publish_async`` + one cumulative ack per batch (bench/raw.py),
the actor through the full runtime (decode, ``handle``, ``emit`` with its
message id and headers, checkpoints every 1,000 messages, acknowledged
outputs before each checkpoint). Time runs from the start of consumption to
the last output acknowledged.

Catch-up: the actor is stopped, 10,000 messages are published, and the
restarted actor's time to ``caught_up`` and its rate are measured against
its steady-state rate (inputs published while it runs, as fast as a
pipelined publisher can).
"""

from __future__ import annotations

import contextlib
import time

import anyio
import nats
import numpy as np

from bench import raw
from bench.report import Report, Row
from diaspora import Actor, ActorRuntime, Message, codec
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric._publisher import OrderedPublisher


class PassThrough(Actor):
    inputs = ("bench.source",)
    checkpoint_every = 1000

    async def handle(self, msg: Message) -> None:
        await self.emit("bench.sink", msg.data)


def _payload(size: int) -> bytes:
    if size >= 1024:
        side = int((size // 4) ** 0.5)
        frame = np.random.default_rng(0).random((side, side), dtype=np.float32)
        return codec.encode({"frame": frame})
    return codec.encode({"b": bytes(size - 8)})


async def _fill(fabric: Fabric, subject: str, payload: bytes, n: int, tag: str) -> None:
    async with OrderedPublisher(fabric, name=f"fill-{tag}") as pub:
        for i in range(n):
            await pub.publish(subject, payload, msg_id=f"{tag}:{i}")
        await pub.flush()


async def _fresh(fabric: Fabric, *subjects: str) -> None:
    for subject in subjects:
        name = subject.replace(".", "_")
        with contextlib.suppress(Exception):
            await fabric.js.delete_stream(name)
        await fabric.ensure_stream(subject, max_bytes=8 * 1024**3)
    try:
        kv = await fabric.ensure_kv("diaspora-checkpoints")
        await kv.purge("bench.pass")
    except Exception:
        pass


async def _actor_rate(fabric: Fabric, n: int, actor_id: str) -> tuple[float, ActorRuntime]:
    runtime = ActorRuntime(PassThrough, fabric, id=actor_id)
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        started = time.perf_counter()
        while runtime.outputs_acked < n:  # noqa: ASYNC110
            await anyio.sleep(0.002)
        elapsed = time.perf_counter() - started
        runtime.request_stop()
    return elapsed, runtime


async def run(report: Report, quick: bool) -> None:
    counts = {"128B": 20_000 if quick else 100_000, "256KiB": 400 if quick else 2_000}
    sizes = {"128B": 128, "256KiB": 256 * 1024}
    async with EmbeddedServer() as server, Fabric(server.url, name="bench") as fabric:
        nc = await nats.connect(server.url)
        js = nc.jetstream(timeout=10)
        for label, size in sizes.items():
            n = counts[label]
            payload = _payload(size)
            mb = len(payload) / 1e6
            # raw nats-py baseline
            await _fresh(fabric, "bench.source", "bench.sink")
            await _fill(fabric, "bench.source", payload, n, f"raw{label}")
            seconds = await raw.passthrough(
                nc, js, "bench.source", "bench.sink", n, batch=256 if size < 4096 else 32
            )
            base = report.add(Row("baseline", f"raw consume+publish {label}", n / seconds, "msg/s"))
            base_mb = report.add(
                Row("baseline", f"raw consume+publish {label} MB/s", n * mb / seconds, "MB/s")
            )
            # the actor
            await _fresh(fabric, "bench.source", "bench.sink")
            await _fill(fabric, "bench.source", payload, n, f"actor{label}")
            seconds, _ = await _actor_rate(fabric, n, f"bench.pass.{label}")
            report.add(
                Row(
                    "actor",
                    f"pass-through actor {label}",
                    n / seconds,
                    "msg/s",
                    base.name,
                    base.value,
                    extra={"n": n, "payload_bytes": len(payload)},
                )
            )
            report.add(
                Row(
                    "actor",
                    f"pass-through actor {label} MB/s",
                    n * mb / seconds,
                    "MB/s",
                    base_mb.name,
                    base_mb.value,
                )
            )
        await _catch_up(report, fabric, quick)
        await nc.close()


async def _catch_up(report: Report, fabric: Fabric, quick: bool) -> None:
    backlog = 10_000
    payload = _payload(128)
    await _fresh(fabric, "bench.source", "bench.sink")
    # steady state: inputs published while the actor runs
    live = 5_000 if quick else 20_000
    runtime = ActorRuntime(PassThrough, fabric, id="bench.catchup")
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        started = time.perf_counter()
        tg.start_soon(_fill, fabric, "bench.source", payload, live, "live")
        while runtime.outputs_acked < live:  # noqa: ASYNC110
            await anyio.sleep(0.002)
        steady = live / (time.perf_counter() - started)
        runtime.request_stop()
    report.add(Row("actor", "steady-state rate (live inputs) 128B", steady, "msg/s"))
    # backlog while stopped, then restart
    await _fill(fabric, "bench.source", payload, backlog, "backlog")
    runtime = ActorRuntime(PassThrough, fabric, id="bench.catchup")
    restart = time.perf_counter()
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        began = time.perf_counter()
        await runtime.caught_up.wait()
        done = time.perf_counter()
        runtime.request_stop()
    report.add(
        Row(
            "actor",
            "restart to caught_up, 10k backlog",
            done - restart,
            "s",
            extra={"startup_s": began - restart},
        )
    )
    rate = backlog / (done - began)
    report.add(
        Row(
            "actor",
            "catch-up rate 128B",
            rate,
            "msg/s",
            "steady-state rate (live inputs) 128B",
            steady,
        )
    )
