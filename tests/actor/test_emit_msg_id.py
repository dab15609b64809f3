"""``emit(..., msg_id=...)``: the caller names an output, so a repeat is stored once."""

from __future__ import annotations

import anyio
import pytest

from diaspora import Actor, ActorRuntime, Message
from diaspora.fabric import Fabric
from diaspora.testing._streams import read_stream

pytestmark = pytest.mark.anyio


class ByName(Actor):
    """Emits each input under the name in its payload (two inputs, one name: one output)."""

    inputs = ("named.in",)

    async def handle(self, msg: Message) -> None:
        await self.emit("named.out", msg.data, msg_id=f"named:{msg.data['name']}")


async def test_outputs_with_the_same_explicit_msg_id_are_stored_once(fabric: Fabric) -> None:
    await fabric.ensure_stream("named.in")
    for name in ("a", "b", "a", "c", "b"):
        await fabric.publish("named.in", {"name": name})
    runtime = ActorRuntime(ByName, fabric, id="byname")
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await runtime.caught_up.wait()
        runtime.request_stop()
    stored = await read_stream(fabric, "named.out")
    assert [m.data["name"] for m in stored] == ["a", "b", "c"]
    assert [m.headers["Nats-Msg-Id"] for m in stored] == ["named:a", "named:b", "named:c"]
