"""OrderedPublisher: every message stored once, in order, through kills and pauses."""

from __future__ import annotations

import anyio
import pytest

from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric._publisher import OrderedPublisher, PublishError
from diaspora.testing._streams import read_stream

pytestmark = pytest.mark.anyio


async def read_all(fabric: Fabric, subject: str) -> list[bytes]:
    return [m.payload for m in await read_stream(fabric, subject, decode=False)]


async def test_order_and_exactly_once_across_server_kills(nats_server: EmbeddedServer) -> None:
    n = 20_000
    async with Fabric(nats_server.url, backoff_initial=0.02, backoff_max=0.2) as fabric:
        await fabric.ensure_stream("ordered")
        async with OrderedPublisher(fabric, name="t", ack_timeout=2) as pub:
            with anyio.fail_after(120):
                for i in range(n):
                    if i in (n // 4, n // 2):
                        # thousands of publishes are unacknowledged at this point
                        await nats_server.kill()
                        await anyio.sleep(0.3)
                        await nats_server.restart()
                    await pub.publish("ordered", str(i).encode(), msg_id=f"t:{i}")
                await pub.flush()
            assert pub.stats["sessions"] >= 3
            assert pub.stats["reordered"] == 0
        await fabric.wait_connected(timeout=20)
        stored = await read_all(fabric, "ordered")
    assert stored == [str(i).encode() for i in range(n)]


async def test_paused_server_delays_but_loses_nothing(nats_server: EmbeddedServer) -> None:
    async with Fabric(nats_server.url) as fabric:
        await fabric.ensure_stream("paused")
        async with OrderedPublisher(fabric, name="p", ack_timeout=0.5) as pub:
            for i in range(100):
                await pub.publish("paused", str(i).encode(), msg_id=f"p:{i}")
            nats_server.pause()
            for i in range(100, 200):
                await pub.publish("paused", str(i).encode(), msg_id=f"p:{i}")
            await anyio.sleep(2)  # several ack timeouts pass while the server is stopped
            assert pub.acked < 200
            nats_server.resume()
            with anyio.fail_after(30):
                await pub.flush()
        stored = await read_all(fabric, "paused")
    assert stored == [str(i).encode() for i in range(200)]


async def test_deterministic_refusal_is_raised_not_retried_forever(fabric: Fabric) -> None:
    await fabric.ensure_stream("capped", max_msgs=5)
    # a stream that refuses new messages when full: JetStream answers with an error
    info = await fabric.js.stream_info("capped")
    config = info.config
    config.discard = "new"  # type: ignore[assignment]
    await fabric.js.update_stream(config)
    async with OrderedPublisher(fabric, name="c", ack_timeout=1) as pub:

        async def publish_all() -> None:
            for i in range(10):
                await pub.publish("capped", b"x", msg_id=f"c:{i}")
            await pub.flush()

        with (
            anyio.fail_after(30),
            pytest.raises(PublishError, match="refused message 5 on 'capped'"),
        ):
            await publish_all()


async def test_publish_requires_a_msg_id(fabric: Fabric) -> None:
    await fabric.ensure_stream("ids")
    async with OrderedPublisher(fabric, name="i") as pub:
        with pytest.raises(ValueError, match="needs a msg_id"):
            await pub.publish("ids", b"x")
