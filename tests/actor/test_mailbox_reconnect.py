"""A mailbox renews its pull consumer the moment the fabric reconnects (real nats-server)."""

from __future__ import annotations

import anyio
import pytest

from diaspora.actor._mailbox import Mailbox
from diaspora.fabric import EmbeddedServer, Fabric

pytestmark = pytest.mark.anyio


async def test_a_mailbox_renews_its_consumer_as_soon_as_the_connection_is_back(
    nats_server: EmbeddedServer,
) -> None:
    async with Fabric(nats_server.url, backoff_initial=0.02, backoff_max=0.2) as fabric:
        await fabric.ensure_stream("xs")
        # its own periodic check would come only every 60 s: the reconnect must wake it
        mailbox = Mailbox(fabric, "reader", {"xs": 1}, heartbeat=120.0, expires=600.0)
        async with anyio.create_task_group() as tg:
            await tg.start(mailbox.run)
            await fabric.publish("xs", {"n": 1})
            first = await mailbox.take(10, timeout=10)
            assert [d.seq for d in first] == [1]
            mailbox.handled(first[0])
            await mailbox.ack(force=True)
            # SIGKILL: no "409 Server Shutdown" tells the consumer its pull request is gone
            await nats_server.kill()
            await nats_server.restart()
            await fabric.wait_connected(timeout=20)
            await fabric.publish("xs", {"n": 2}, timeout=10)
            second = await mailbox.take(10, timeout=20)
            assert [d.seq for d in second] == [2]
            tg.cancel_scope.cancel()
