"""Size limits come from the connected server's max_payload, not from a constant."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from diaspora.actor._mailbox import Mailbox
from diaspora.errors import FabricUnavailable
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric import headers as H
from diaspora.fabric._reader import read_stored

pytestmark = pytest.mark.anyio

SMALL: int = 256 * 1024


@pytest.fixture
async def small_server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(max_payload=SMALL) as server:
        yield server


async def test_max_payload_is_what_the_server_announces(small_server: EmbeddedServer) -> None:
    fabric = Fabric(small_server.url)
    with pytest.raises(FabricUnavailable, match="not connected"):
        _ = fabric.max_payload
    async with fabric:
        assert fabric.max_payload == SMALL
        assert SMALL // 2 <= fabric.inline_limit < SMALL


async def test_payloads_over_the_servers_limit_go_to_the_object_store(
    small_server: EmbeddedServer,
) -> None:
    async with Fabric(small_server.url) as fabric:
        await fabric.ensure_stream("limits.xs")
        inline = b"i" * (fabric.inline_limit - 1)
        offloaded = b"o" * (SMALL + 1)  # the server itself would refuse this inline
        await fabric.publish_bytes("limits.xs", inline, msg_id="limits-1")
        await fabric.publish_bytes("limits.xs", offloaded, msg_id="limits-2")
        stored = [m async for m in read_stored(fabric, "limits.xs", resolve_blobs=False)]
        assert H.BLOB not in stored[0].headers
        assert stored[0].payload == inline
        assert stored[1].headers[H.BLOB] == "diaspora-blobs/limits-2"
        assert stored[1].payload == b""
        resolved = [m.payload async for m in read_stored(fabric, "limits.xs")]
        assert resolved == [inline, offloaded]


async def test_kv_values_may_be_as_large_as_the_inline_limit(
    small_server: EmbeddedServer,
) -> None:
    async with Fabric(small_server.url) as fabric:
        kv = await fabric.ensure_kv("limits-kv")
        await kv.put("k", b"v" * fabric.inline_limit)
        entry = await kv.get("k")
        assert entry is not None
        assert len(entry.value) == fabric.inline_limit


async def test_a_mailbox_takes_a_message_larger_than_its_byte_window(
    small_server: EmbeddedServer,
) -> None:
    async with Fabric(small_server.url) as fabric:
        await fabric.ensure_stream("limits.big")
        body = b"b" * (fabric.inline_limit - 1)
        await fabric.publish_bytes("limits.big", body)
        # a window far below one message: the idle request still asks for max_payload
        mailbox = Mailbox(fabric, "limits-reader", {"limits.big": 1}, max_bytes=4096)
        async with anyio.create_task_group() as tg:
            await tg.start(mailbox.run)
            got = await mailbox.take(10, timeout=10)
            tg.cancel_scope.cancel()
        assert [(d.seq, len(d.payload)) for d in got] == [(1, len(body))]
