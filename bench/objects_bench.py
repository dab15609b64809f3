"""Object reads and restart recovery: the fabric's chunk-subject reader against nats-py's
``ObjectStore.get``, and how soon an actor's outputs resume after a graceful server restart.

Blob rows: MB/s reading one object of 4, 16 and 64 MiB, Diaspora's
``Fabric.read_object`` (one pull request over ``$O.<bucket>.C.<nuid>``, SHA-256
checked) divided by ``ObjectStore.get`` (nats-py, also digest-checked) on the
same object in the same run.

Recovery rows: an echo actor on a stream; the server is restarted gracefully
(SIGTERM, same port and store) ``n`` times; after each restart one input is
published and the time from the server being ready to its output is taken.
The baseline is the time from the server being ready to the fabric's
connection being back (nothing can resume sooner). Under a flow: a producer
publishes 200 inputs/s (with message ids) through ``n`` restarts; the row is
the longest gap between two outputs, against the longest restart (SIGTERM to
ready) it spans.
"""

from __future__ import annotations

import itertools
import statistics
import time

import anyio

from bench.report import Report, Row
from diaspora import Actor, ActorRuntime, Fabric, Message
from diaspora.fabric import EmbeddedServer

MIB = 1024 * 1024


async def run(report: Report, quick: bool) -> None:
    await _blob_reads(report, quick)
    await _restart_recovery(report, quick)
    await _restart_under_flow(report, quick)


async def _blob_reads(report: Report, quick: bool) -> None:
    sizes = [4, 16] if quick else [4, 16, 64]
    async with EmbeddedServer() as server, Fabric(server.url, events_stream=False) as fabric:
        obs = await fabric.ensure_object_store("bench-objects")
        for mib in sizes:
            data = (bytes(range(256)) * 4096) * (mib * MIB // (256 * 4096))
            await obs.put(f"o{mib}", data)
            ours = await _best_of(3, lambda m=mib: fabric.read_object("bench-objects", f"o{m}"))
            rounds = 1 if mib >= 64 else 2
            theirs = await _best_of(rounds, lambda m=mib: _nats_get(obs, f"o{m}"))
            base = report.add(
                Row("baseline", f"ObjectStore.get {mib} MiB", mib * MIB / theirs / 1e6, "MB/s")
            )
            report.add(
                Row(
                    "objects",
                    f"blob read {mib} MiB (chunk-subject pull)",
                    mib * MIB / ours / 1e6,
                    "MB/s",
                    baseline=base.name,
                    baseline_value=base.value,
                    extra={"seconds": ours, "baseline_seconds": theirs},
                )
            )
            check = await fabric.read_object("bench-objects", f"o{mib}")
            assert check == data, f"object o{mib} read back wrong"


async def _nats_get(obs: object, name: str) -> bytes:
    result = await obs.get(name)  # type: ignore[attr-defined]
    data: bytes = result.data
    return data


async def _best_of(rounds: int, read: object) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        await read()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best


class _Echo(Actor):
    inputs = ("bench.restart.in",)

    async def handle(self, msg: Message) -> None:
        await self.emit("bench.restart.out", msg.data)


async def _restart_recovery(report: Report, quick: bool) -> None:
    n = 5 if quick else 20
    resumed: list[float] = []
    reconnected: list[float] = []
    async with (
        EmbeddedServer() as server,
        Fabric(server.url, backoff_initial=0.02, backoff_max=0.2) as fabric,
    ):
        await fabric.ensure_stream("bench.restart.in")
        await fabric.ensure_stream("bench.restart.out")
        outputs: list[float] = []

        async def on_output(_: object) -> None:
            outputs.append(time.monotonic())

        async with fabric.subscription("bench.restart.out", on_output, flush=True):
            runtime = ActorRuntime(_Echo, fabric, id="bench-echo")
            async with anyio.create_task_group() as tg:
                await tg.start(runtime.run)
                await fabric.publish("bench.restart.in", {"i": 0})
                await _wait(lambda: len(outputs) >= 1)
                for i in range(1, n + 1):
                    await server.restart()
                    back = time.monotonic()
                    await _wait(lambda: fabric.is_connected)
                    reconnected.append(time.monotonic() - back)
                    await fabric.publish("bench.restart.in", {"i": i}, timeout=30)
                    await _wait(lambda k=i: len(outputs) > k, timeout=60)
                    resumed.append(outputs[i] - back)
                runtime.request_stop()
    for label, pick in (("p50", statistics.median), ("max", max)):
        base = report.add(
            Row("baseline", f"server restart -> reconnected {label}", pick(reconnected) * 1e3, "ms")
        )
        report.add(
            Row(
                "objects",
                f"server restart -> outputs resume {label}",
                pick(resumed) * 1e3,
                "ms",
                baseline=base.name,
                baseline_value=base.value,
                extra={"restarts": n, "resumed_s": [round(s, 4) for s in resumed]},
            )
        )


async def _wait(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("bench: condition not met")
        await anyio.sleep(0.002)


async def _restart_under_flow(report: Report, quick: bool) -> None:
    n = 3 if quick else 10
    outages: list[float] = []
    outputs: list[float] = []
    async with (
        EmbeddedServer() as server,
        Fabric(server.url, backoff_initial=0.02, backoff_max=0.2) as fabric,
    ):
        await fabric.ensure_stream("bench.restart.in")
        await fabric.ensure_stream("bench.restart.out")

        async def on_output(_: object) -> None:
            outputs.append(time.monotonic())

        async def produce() -> None:
            i = 0
            while True:
                await fabric.publish("bench.restart.in", {"i": i}, msg_id=f"f{i}", timeout=30)
                i += 1
                await anyio.sleep(0.005)

        async with fabric.subscription("bench.restart.out", on_output, flush=True):
            runtime = ActorRuntime(_Echo, fabric, id="bench-flow")
            async with anyio.create_task_group() as tg:
                await tg.start(runtime.run)
                tg.start_soon(produce)
                await _wait(lambda: len(outputs) >= 100)
                for _ in range(n):
                    started = time.monotonic()
                    await server.restart()
                    outages.append(time.monotonic() - started)
                    await anyio.sleep(1.0)  # let the flow settle before the next restart
                tg.cancel_scope.cancel()
    gap = max(b - a for a, b in itertools.pairwise(outputs))
    base = report.add(
        Row("baseline", "server restart (SIGTERM -> ready) max", max(outages) * 1e3, "ms")
    )
    report.add(
        Row(
            "objects",
            "200 msg/s through restarts: longest output gap",
            gap * 1e3,
            "ms",
            baseline=base.name,
            baseline_value=base.value,
            extra={"restarts": n, "outputs": len(outputs)},
        )
    )
