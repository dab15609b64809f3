"""Direct gets by sequence, many in flight: the message, or None when the stream lost it."""

from __future__ import annotations

import pytest
from nats.js.api import StreamConfig

from diaspora import codec
from diaspora.fabric import Fabric, StreamLimits, get_many

pytestmark = pytest.mark.anyio


async def test_get_many_returns_each_sequence_and_none_for_what_retention_dropped(
    fabric: Fabric,
) -> None:
    await fabric.ensure_stream("direct.xs", StreamLimits(max_msgs=50))
    for i in range(80):
        await fabric.publish("direct.xs", {"i": i}, headers={"Diaspora-Key": f"k{i}"})
    found = await get_many(fabric, "direct.xs", [80, 31, 30, 5, 60], in_flight=3)
    assert list(found) == [80, 31, 30, 5, 60]
    assert found[30] is None
    assert found[5] is None
    for seq in (80, 31, 60):
        msg = found[seq]
        assert msg is not None
        assert msg.seq == seq
        assert codec.decode(msg.payload) == {"i": seq - 1}
        assert msg.subject == "direct.xs"
        assert msg.headers["Diaspora-Key"] == f"k{seq - 1}"
        assert "Nats-Sequence" not in msg.headers
        assert msg.timestamp > 0


async def test_a_payload_in_the_object_store_is_fetched(fabric: Fabric) -> None:
    await fabric.ensure_stream("direct.big")
    big = bytes(range(256)) * (fabric.inline_limit // 256 + 8)
    await fabric.publish("direct.big", {"blob": big})
    found = await get_many(fabric, "direct_big", [1])
    msg = found[1]
    assert msg is not None
    assert codec.decode(msg.payload) == {"blob": big}


async def test_a_stream_made_without_allow_direct_gains_it_and_is_read_either_way(
    fabric: Fabric,
) -> None:
    await fabric.js.add_stream(StreamConfig(name="direct_old", subjects=["direct.old"]))
    await fabric.publish("direct.old", {"i": 1})
    found = await get_many(fabric, "direct.old", [1, 2])  # through the API: no direct get
    assert found[2] is None
    assert found[1] is not None
    assert codec.decode(found[1].payload) == {"i": 1}
    info = await fabric.ensure_stream("direct.old")
    assert info.config.allow_direct is True
    found = await get_many(fabric, "direct.old", [1])
    assert found[1] is not None
