"""read_stream gives the fabric's own stored-message record with the payload decoded:
one record type, not a near-twin with its own field list."""

from __future__ import annotations

import time

import pytest

from diaspora.fabric import Fabric
from diaspora.fabric._reader import StoredMsg
from diaspora.testing._streams import StoredMessage, read_stream

pytestmark = pytest.mark.anyio


async def test_read_stream_returns_stored_msgs_with_their_decoded_payload(fabric: Fabric) -> None:
    await fabric.ensure_stream("xs")
    before = time.time()
    await fabric.publish("xs", {"x": 1}, headers={"Diaspora-Key": "k"})
    await fabric.publish_bytes("xs", b"\xc1 not msgpack")  # still read, data None
    first, second = await read_stream(fabric, "xs")
    assert isinstance(first, StoredMsg)
    assert isinstance(first, StoredMessage)
    assert (first.seq, first.subject, first.data) == (1, "xs", {"x": 1})
    assert first.headers["Diaspora-Key"] == "k"
    assert first.timestamp >= before - 1
    assert second.data is None
    assert second.payload == b"\xc1 not msgpack"
