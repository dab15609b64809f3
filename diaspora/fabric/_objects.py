"""Reading an object-store object fast: one pull request over its chunk subject.

An object ``name`` of bucket ``b`` is a meta message on ``$O.b.M.<base64 name>``
(its size, chunk count, SHA-256 digest and ``nuid``) and its chunks, in order,
on ``$O.b.C.<nuid>`` of the stream ``OBJ_b``. nats-py's ``ObjectStore.get``
reads them through a push consumer and grows one ``bytes`` by concatenation,
which slows to a few MiB/s for objects of tens of MiB (nats.py issue #703).
:func:`read_object` creates a short-lived pull consumer filtered on the chunk
subject, asks for every chunk in one pull request, joins the chunks once and
checks the count, the size and the digest the meta message names.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any, Final

import anyio
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from diaspora.errors import FabricUnavailable, ObjectUnreadable
from diaspora.fabric import _jsapi

if TYPE_CHECKING:
    from diaspora.fabric._connection import Connection

__all__ = ["read_object"]

_DIGEST_PREFIX: Final = "SHA-256="
#: The reading consumer is deleted when done; if the reader dies first, the server drops it.
_INACTIVE_THRESHOLD: Final = 30.0


def _meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


async def _info(connection: Connection, bucket: str, name: str) -> dict[str, Any]:
    where = f"object {bucket}/{name}"
    js = connection.jetstream()
    try:
        msg = await js.get_last_msg(f"OBJ_{bucket}", _meta_subject(bucket, name))
    except nats.js.errors.NotFoundError:
        raise ObjectUnreadable(
            f"{where} does not exist (no such bucket, or no such object in it): "
            "it was deleted, or never stored on this server"
        ) from None
    except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
        raise FabricUnavailable(f"reading the info of {where} failed: {exc!r}") from exc
    try:
        info: dict[str, Any] = json.loads(msg.data or b"")
        nuid = info["nuid"]
        if not isinstance(nuid, str) or not nuid:
            raise ValueError("no nuid")
    except (ValueError, KeyError, TypeError) as exc:
        raise ObjectUnreadable(f"{where}: its meta message is unreadable ({exc!r})") from exc
    if info.get("deleted"):
        raise ObjectUnreadable(f"{where} was deleted")
    if (info.get("options") or {}).get("link"):
        raise ObjectUnreadable(f"{where} is a link to another object: links are not followed")
    return info


def _expected_digest(where: str, info: dict[str, Any]) -> bytes:
    text = str(info.get("digest") or "")
    if not text.upper().startswith(_DIGEST_PREFIX):
        raise ObjectUnreadable(f"{where}: its info names no SHA-256 digest ({text!r})")
    try:
        return base64.urlsafe_b64decode(text[len(_DIGEST_PREFIX) :])
    except (binascii.Error, ValueError) as exc:
        raise ObjectUnreadable(f"{where}: its digest {text!r} is not base64") from exc


class _Chunks:
    """Collects the chunks one pull request delivers, hashing them as they come."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.parts: list[bytes] = []
        self.size = 0
        self.sha = hashlib.sha256()
        self.status: str | None = None
        self.done = anyio.Event()

    async def on_msg(self, msg: Msg) -> None:
        if not msg.reply:  # a status: heartbeat, or the request ended before every chunk
            headers = msg.headers or {}
            status = headers.get(_jsapi.STATUS, "")
            if status != _jsapi.HEARTBEAT:
                self.status = f"{status} {headers.get(_jsapi.DESCRIPTION, '')}".strip()
                self.done.set()
            return
        self.parts.append(msg.data)
        self.size += len(msg.data)
        self.sha.update(msg.data)
        if len(self.parts) >= self.expected:
            self.done.set()


async def read_object(connection: Connection, bucket: str, name: str) -> bytes:
    """The bytes of object ``name`` in bucket ``bucket``, their SHA-256 checked.

    Raises :class:`~diaspora.errors.ObjectUnreadable` naming the object when it
    is missing, deleted, lacks chunks, or its bytes do not match its size or
    digest; :class:`~diaspora.errors.FabricUnavailable` when the server does
    not answer.
    """
    where = f"object {bucket}/{name}"
    info = await _info(connection, bucket, name)
    size, chunks = int(info.get("size") or 0), int(info.get("chunks") or 0)
    digest = _expected_digest(where, info)
    if size == 0 or chunks == 0:
        if hashlib.sha256().digest() != digest:
            raise ObjectUnreadable(f"{where}: empty, but its digest is of other bytes")
        return b""
    stream, consumer = f"OBJ_{bucket}", f"dsp-obj-{uuid.uuid4().hex}"
    nc = connection.client
    js = connection.jetstream()
    collected = _Chunks(chunks)
    inbox = nc.new_inbox()
    sub = await nc.subscribe(
        inbox, cb=collected.on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
    )
    try:
        try:
            created = await js.add_consumer(
                stream,
                ConsumerConfig(
                    name=consumer,
                    filter_subject=f"$O.{bucket}.C.{info['nuid']}",
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.NONE,
                    mem_storage=True,
                    num_replicas=1,
                    inactive_threshold=_INACTIVE_THRESHOLD,
                ),
            )
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            raise FabricUnavailable(f"cannot open a reader of {where}: {exc!r}") from exc
        try:
            stored = created.num_pending or 0
            if stored != chunks:
                raise ObjectUnreadable(
                    f"{where}: its stream {stream!r} holds {stored} of its {chunks} chunks; "
                    "the object is incomplete (a chunk was lost or purged): store it again"
                )
            await _pull_all(connection, stream, consumer, inbox, collected, where)
        finally:
            # no answer needed: if this is lost, the server drops the consumer once inactive
            await connection.publish_core(
                f"{_jsapi.api_prefix(None)}.CONSUMER.DELETE.{stream}.{consumer}", b""
            )
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await sub.unsubscribe()
    if collected.size != size:
        raise ObjectUnreadable(f"{where}: read {collected.size} bytes, its info says {size}")
    if collected.sha.digest() != digest:
        raise ObjectUnreadable(
            f"{where}: SHA-256 of its {chunks} chunks does not match its digest (corrupt chunk); "
            "store it again"
        )
    return b"".join(collected.parts)


async def _pull_all(
    connection: Connection, stream: str, consumer: str, inbox: str, chunks: _Chunks, where: str
) -> None:
    """Ask for every chunk at once; wait while they keep coming."""
    idle = connection.request_timeout
    request = {"batch": chunks.expected, "expires": int(4 * idle * 1e9)}
    try:
        await connection.client.publish(
            _jsapi.next_subject(stream, consumer), json.dumps(request).encode(), reply=inbox
        )
    except (nats.errors.Error, OSError) as exc:
        raise FabricUnavailable(f"reading {where}: pull request not sent: {exc!r}") from exc
    while not chunks.done.is_set():
        seen = len(chunks.parts)
        with anyio.move_on_after(idle):
            await chunks.done.wait()
        if not chunks.done.is_set() and len(chunks.parts) == seen:
            raise FabricUnavailable(
                f"reading {where}: no chunk for {idle}s after {seen} of {chunks.expected}; "
                "is the server up?"
            )
    if len(chunks.parts) < chunks.expected:
        raise ObjectUnreadable(
            f"{where}: the server ended the read after {len(chunks.parts)} of "
            f"{chunks.expected} chunks ({chunks.status})"
        )
