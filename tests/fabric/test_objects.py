"""Objects are read over their chunk subject, with the SHA-256 of their info checked."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diaspora.errors import DecodeError, ObjectUnreadable
from diaspora.fabric import Fabric

pytestmark = pytest.mark.anyio

CHUNK = 128 * 1024  # nats-py's chunk size


@pytest.mark.parametrize(
    "size", [1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * 1024 * 1024 + 17], ids=lambda n: f"{n}B"
)
async def test_an_object_reads_back_byte_for_byte(fabric: Fabric, size: int) -> None:
    obs = await fabric.ensure_object_store("objs")
    data = hashlib.sha256(b"seed").digest() * (size // 32 + 1)
    data = data[:size]
    await obs.put("thing", data)
    assert await fabric.read_object("objs", "thing") == data


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sizes=st.lists(st.integers(0, 3 * CHUNK), min_size=1, max_size=4))
async def test_the_latest_version_of_a_rewritten_object_is_read(
    fabric: Fabric, sizes: list[int]
) -> None:
    obs = await fabric.ensure_object_store("objs")
    for n, size in enumerate(sizes):
        await obs.put("again", bytes([n % 251]) * size)
    assert await fabric.read_object("objs", "again") == bytes([(len(sizes) - 1) % 251]) * sizes[-1]


async def _chunk_seqs(fabric: Fabric, bucket: str, name: str) -> tuple[str, list[int]]:
    obs = await fabric.ensure_object_store(bucket)
    info = await obs.get_info(name)
    subject = f"$O.{bucket}.C.{info.nuid}"
    sub = await fabric.js.pull_subscribe(subject, durable=None, stream=f"OBJ_{bucket}")
    msgs = await sub.fetch(info.chunks or 0, timeout=5)
    await sub.unsubscribe()
    return subject, [m.metadata.sequence.stream for m in msgs]


async def test_a_corrupt_chunk_is_an_error_naming_the_object(fabric: Fabric) -> None:
    obs = await fabric.ensure_object_store("objs")
    await obs.put("bad", b"a" * (3 * CHUNK))
    subject, seqs = await _chunk_seqs(fabric, "objs", "bad")
    await fabric.js.delete_msg("OBJ_objs", seqs[1])
    await fabric.js.publish(subject, b"b" * CHUNK, stream="OBJ_objs")  # same count, other bytes
    with pytest.raises(ObjectUnreadable, match=r"objs/bad: SHA-256 .* does not match"):
        await fabric.read_object("objs", "bad")


async def test_a_missing_chunk_is_an_error_naming_the_object(fabric: Fabric) -> None:
    obs = await fabric.ensure_object_store("objs")
    await obs.put("holey", b"a" * (3 * CHUNK))
    _, seqs = await _chunk_seqs(fabric, "objs", "holey")
    await fabric.js.delete_msg("OBJ_objs", seqs[0])
    with pytest.raises(ObjectUnreadable, match=r"objs/holey: .* holds 2 of its 3 chunks"):
        await fabric.read_object("objs", "holey")


async def test_a_missing_object_or_bucket_is_an_error_naming_it(fabric: Fabric) -> None:
    await fabric.ensure_object_store("objs")
    with pytest.raises(ObjectUnreadable, match=r"objs/nothing does not exist"):
        await fabric.read_object("objs", "nothing")
    with pytest.raises(ObjectUnreadable, match=r"nobucket/x does not exist"):
        await fabric.read_object("nobucket", "x")
    obs = await fabric.ensure_object_store("objs")
    await obs.put("gone", b"x" * 10)
    await obs.delete("gone")
    with pytest.raises(ObjectUnreadable, match=r"objs/gone was deleted"):
        await fabric.read_object("objs", "gone")


async def test_a_corrupt_blob_payload_is_a_decode_error_naming_it(fabric: Fabric) -> None:
    await fabric.ensure_stream("blobs.in")
    await fabric.publish_bytes("blobs.in", b"z" * (fabric.inline_limit + 1), msg_id="blob-1")
    _, seqs = await _chunk_seqs(fabric, "diaspora-blobs", "blob-1")
    await fabric.js.delete_msg("OBJ_diaspora-blobs", seqs[-1])
    with pytest.raises(DecodeError, match=r"diaspora-blobs/blob-1.*chunks"):
        await fabric.read_blob("diaspora-blobs/blob-1")
