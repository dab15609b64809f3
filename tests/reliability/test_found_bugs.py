"""Minimal reproductions of the framework bugs the reliability suite found (kept as
regression tests; see the commit that fixed each)."""

from __future__ import annotations

import anyio
import pytest

from diaspora import Actor, ActorRuntime, Message
from diaspora.fabric import EmbeddedServer, Fabric, stream_name
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.testing import LinkProxy, wait_until
from diaspora.testing._streams import read_stream

pytestmark = pytest.mark.anyio


class Echo(Actor):
    inputs = ("gap.in",)

    async def handle(self, msg: Message) -> None:
        await self.emit("gap.out", msg.data)


async def count(fabric: Fabric, subject: str) -> int:
    try:
        return (await fabric.js.stream_info(stream_name(subject))).state.messages
    except Exception:
        return 0


async def test_messages_lost_in_transit_on_a_reset_link_are_delivered_not_declared_lost(
    fabric: Fabric, link_proxy: LinkProxy
) -> None:
    """Found by the suite as lost outputs after ``reset_link``/``kill_server``: messages the
    server had pushed into a connection that then broke were declared lost (a gap), although
    the stream still held them, because the consumer had moved on past them."""
    await fabric.ensure_stream("gap.in")
    await fabric.ensure_stream("gap.out")
    for i in range(20):
        await fabric.publish("gap.in", {"i": i})

    async def outputs_at_least(n: int) -> bool:
        return await count(fabric, "gap.out") >= n

    async def consumer_delivered(seq: int) -> bool:
        info = await fabric.js.consumer_info("gap_in", "dsp-echo")
        return info.delivered.stream_seq >= seq

    async with Fabric(link_proxy.url, name="echo", backoff_initial=0.01) as linked:
        runtime = ActorRuntime(Echo, linked, id="echo")
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            await wait_until(lambda: outputs_at_least(20), timeout=10)
            link_proxy.blackhole()  # the server pushes 21..40 into the link, which holds them
            for i in range(20, 40):
                await fabric.publish("gap.in", {"i": i})
            await wait_until(lambda: consumer_delivered(40), timeout=10)
            reconnects = linked.reconnects
            link_proxy.reset()  # ...and drops them with the connection
            link_proxy.heal()
            await wait_until(lambda: linked.reconnects > reconnects, timeout=10, interval=0.001)
            for i in range(40, 60):  # delivered on the old pull request: 41 follows 20
                await fabric.publish("gap.in", {"i": i})
            await wait_until(lambda: outputs_at_least(60), timeout=20)
            runtime.request_stop()
    assert runtime.stats.lost == 0
    assert await count(fabric, "gap.out") == 60


class SlowToRecover(OrderedPublisher):
    """Its recovery task gets the event loop late, as a busy actor's may."""

    async def _recover(self) -> None:
        await anyio.sleep(0.5)
        await super()._recover()


async def test_a_publish_after_a_lost_session_does_not_overtake_the_messages_lost_with_it(
    nats_server: EmbeddedServer,
) -> None:
    """Found by the suite as an item gap after ``kill_server``: the transform saw record
    n+13 right after n-1, declared n..n+12 lost, and skipped them when they came. The
    producer's publisher had lost n..n+12 with its session; its next publish, made before
    the recovery task ran, opened a new session and was stored first."""
    async with Fabric(nats_server.url, backoff_initial=0.01, backoff_max=0.05) as fabric:
        await fabric.ensure_stream("ordered")
        async with SlowToRecover(fabric, name="t", ack_timeout=2) as pub:
            for i in range(5):
                await pub.publish("ordered", str(i).encode(), msg_id=f"t:{i}")
            await pub.flush()
            nats_server.pause()  # 5..9 are sent and never acknowledged
            for i in range(5, 10):
                await pub.publish("ordered", str(i).encode(), msg_id=f"t:{i}")
            await nats_server.kill()  # their session dies with the server
            await nats_server.start()
            await pub.publish("ordered", b"10", msg_id="t:10")  # before the recovery runs
            with anyio.fail_after(30):
                await pub.flush()
        await fabric.wait_connected(timeout=10)
        stored = [m.payload for m in await read_stream(fabric, "ordered", decode=False)]
    assert stored == [str(i).encode() for i in range(11)]
