"""The actor contract under faults: every output exactly once, in order (issue tests 1-3)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import anyio
import pytest

from diaspora import ActorRuntime
from diaspora.errors import ActorCrashed
from diaspora.fabric import EmbeddedServer, Fabric, stream_name
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from tests.actor.sample_actors import RunningSum

pytestmark = pytest.mark.anyio

N = 10_000


def expected_sums(n: int, scale: int = 1) -> list[dict[str, int]]:
    out, total = [], 0
    for i in range(n):
        total += i * scale
        out.append({"total": total, "seq": i + 1})
    return out


async def publish_numbers(fabric: Fabric, n: int, per_batch_pause: float = 0.0) -> None:
    from diaspora import codec

    async with OrderedPublisher(fabric, name="numbers-source") as pub:
        for i in range(n):
            await pub.publish("numbers", codec.encode({"x": i}), msg_id=f"numbers:{i}")
            if per_batch_pause and i % 500 == 499:
                await anyio.sleep(per_batch_pause)
        await pub.flush()


async def stream_count(fabric: Fabric, subject: str) -> int:
    """Messages in ``subject``'s stream (0 while it does not exist or the link is down)."""
    try:
        info = await fabric.js.stream_info(stream_name(subject))
    except Exception:
        return 0
    return info.state.messages


async def run_until(
    runtime: ActorRuntime, done: Callable[[], Awaitable[bool]], timeout: float = 60
) -> None:
    """Run ``runtime`` until ``done()``; then stop it gracefully. Crashes propagate."""
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await wait_until(done, timeout=timeout, interval=0.05)
        runtime.request_stop()


async def test_crashes_at_random_points_emit_each_output_once_in_order(fabric: Fabric) -> None:
    await fabric.ensure_stream("numbers")
    crash_at = set(random.Random(20).sample(range(1, N + 1), 20))
    restarts = 0

    async def all_out() -> bool:
        return await stream_count(fabric, "sums") >= N

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish_numbers, fabric, N)
        while True:
            runtime = ActorRuntime(RunningSum, fabric, id="sum", args={"crash_at": crash_at})
            try:
                await run_until(runtime, all_out)
                break
            except* ActorCrashed:
                restarts += 1
    assert restarts == 20
    assert not crash_at
    stored = await read_stream(fabric, "sums")
    assert [m.data for m in stored] == expected_sums(N)
    assert len({m.headers["Nats-Msg-Id"] for m in stored}) == N


async def test_server_killed_and_restarted_twice_mid_run(nats_server: EmbeddedServer) -> None:
    async with Fabric(nats_server.url, backoff_initial=0.02, backoff_max=0.2) as fabric:
        await fabric.ensure_stream("numbers")
        await fabric.ensure_stream("sums")
        runtime = ActorRuntime(RunningSum, fabric, id="sum", args={"delay": 0.0002})

        async def kills() -> None:
            for threshold in (N // 4, N // 2):
                await wait_until(
                    lambda t=threshold: runtime.positions.get("numbers", 0) >= t,
                    timeout=60,
                    interval=0.01,
                )
                await nats_server.kill()
                await anyio.sleep(0.3)
                await nats_server.restart()

        async def all_out() -> bool:
            return await stream_count(fabric, "sums") >= N

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                tg.start_soon(publish_numbers, fabric, N, 0.05)
                tg.start_soon(kills)
                await run_until(runtime, all_out, timeout=110)
        assert runtime.stats.handled >= N
        await fabric.wait_connected(timeout=20)
        stored = await read_stream(fabric, "sums")
    assert [m.data for m in stored] == expected_sums(N)
