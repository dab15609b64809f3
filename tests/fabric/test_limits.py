"""Size limits come from the connected server's max_payload, not from a constant."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import anyio
import numpy as np
import pytest

from diaspora import Actor, ActorRuntime, Message, codec
from diaspora.actor import CheckpointSlot
from diaspora.actor._mailbox import Mailbox
from diaspora.errors import FabricUnavailable
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric import headers as H
from diaspora.fabric._reader import read_stored
from diaspora.testing import wait_until

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


STANDARD: int = 1024 * 1024  # nats-server's own default max_payload


class Digest(Actor):
    """Emits the SHA-256 of each input's ``blob``: a small output for a large input."""

    inputs = ("limits.frames",)

    async def handle(self, msg: Message) -> None:
        await self.emit("limits.digests", {"sha": hashlib.sha256(msg.data["blob"]).hexdigest()})


async def test_a_2_mib_payload_on_a_standard_server_reaches_an_actor_intact() -> None:
    async with EmbeddedServer(max_payload=STANDARD) as server, Fabric(server.url) as fabric:
        assert fabric.max_payload == STANDARD
        await fabric.ensure_stream("limits.frames")
        await fabric.ensure_stream("limits.digests")
        blob = np.random.default_rng(1).bytes(2 * 1024 * 1024)
        await fabric.publish("limits.frames", {"blob": blob}, msg_id="frame-1")
        (stored,) = [m async for m in read_stored(fabric, "limits.frames", resolve_blobs=False)]
        assert stored.headers[H.BLOB] == "diaspora-blobs/frame-1"
        runtime = ActorRuntime(Digest, fabric, id="digest")
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            await wait_until(lambda: runtime.outputs_acked >= 1, timeout=20, what="digest out")
            runtime.request_stop()
        (out,) = [codec.decode(m.payload) async for m in read_stored(fabric, "limits.digests")]
        assert out == {"sha": hashlib.sha256(blob).hexdigest()}


@pytest.mark.parametrize("margin", [64, -64, -2 * STANDARD], ids=["near", "over", "3x"])
async def test_checkpoint_state_is_offloaded_by_the_connected_servers_limit(margin: int) -> None:
    async with EmbeddedServer(max_payload=STANDARD) as server, Fabric(server.url) as fabric:
        state = b"s" * (fabric.inline_limit - margin)  # near: fits alone, not with the record
        slot = await CheckpointSlot.claim(fabric, "big-state")
        saved = await slot.save(positions={"xs": 3}, state=state)
        assert saved.state_ref == "diaspora-checkpoints/big-state/1"
        again = await CheckpointSlot.claim(fabric, "big-state")
        assert again.current is not None
        assert again.current.state == state
        assert again.current.positions == {"xs": 3}


async def test_checkpoint_state_well_under_the_limit_stays_in_the_record() -> None:
    async with EmbeddedServer(max_payload=STANDARD) as server, Fabric(server.url) as fabric:
        slot = await CheckpointSlot.claim(fabric, "small-state")
        saved = await slot.save(positions={}, state=b"s" * (fabric.inline_limit // 2))
        assert saved.state_ref is None
