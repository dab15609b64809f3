"""Key-value buckets and object stores, with errors in Diaspora's own terms.

Callers above the fabric see :class:`KeyValueBucket` (``get`` answers
``None`` for a missing key; a write that expected another revision raises
:class:`~diaspora.errors.RevisionMismatch`; a broken link raises
:class:`~diaspora.errors.FabricUnavailable`), never nats-py's exceptions.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Protocol

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from diaspora.errors import (
    DecodeError,
    FabricUnavailable,
    ObjectUnreadable,
    PayloadTooLarge,
    RevisionMismatch,
)
from diaspora.fabric import _jsapi
from diaspora.fabric import headers as H
from diaspora.fabric._objects import read_object

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from diaspora.fabric._connection import Connection

#: Payloads up to this size are always sent inline (any limit is larger).
ALWAYS_INLINE: Final = 512

__all__ = [
    "ALWAYS_INLINE",
    "BLOB_BUCKET",
    "Carrier",
    "KeyValueBucket",
    "KvEntry",
    "Stores",
    "stamp",
]

#: Where payloads too large to travel inline are stored.
BLOB_BUCKET: Final = "diaspora-blobs"


def stamp(headers: Mapping[str, str] | None, msg_id: str | None) -> dict[str, str]:
    """A copy of ``headers`` with ``msg_id`` stamped as ``Nats-Msg-Id``."""
    hdrs = dict(headers) if headers else {}
    if msg_id is not None:
        hdrs[H.MSG_ID] = msg_id
    return hdrs


class Carrier(Protocol):
    """Anything with a payload and headers: a nats-py message, an :class:`Inbound`."""

    @property
    def data(self) -> bytes: ...

    @property
    def headers(self) -> dict[str, str] | None: ...


@dataclass(frozen=True, slots=True)
class KvEntry:
    """The value of one key and the revision it was written at."""

    key: str
    value: bytes
    revision: int


@contextlib.asynccontextmanager
async def _translated(bucket: str, key: str, action: str) -> AsyncIterator[None]:
    try:
        yield
    except nats.js.errors.KeyWrongLastSequenceError as exc:
        raise RevisionMismatch(
            f"{action} {bucket}/{key}: the key is at another revision (someone else wrote it); "
            "read it again and retry"
        ) from exc
    except (nats.errors.Error, OSError, TimeoutError) as exc:
        if isinstance(exc, FabricUnavailable):
            raise
        raise FabricUnavailable(
            f"{action} {bucket}/{key} failed: {exc!r}; is the server up and the bucket there?"
        ) from exc


class KeyValueBucket:
    """One JetStream key-value bucket (obtain it with :meth:`Fabric.ensure_kv`).

    A bucket of another JetStream domain (``SiteView.ensure_kv``) is written
    through that domain's API prefix, ``$JS.<domain>.API.$KV.<bucket>.<key>``:
    the plain ``$KV.>`` subjects nats-py publishes to do not cross a leaf link.

    >>> import anyio
    >>> from diaspora.fabric import Fabric
    >>> async def main() -> None:
    ...     async with Fabric() as fabric:
    ...         kv = await fabric.ensure_kv("settings")
    ...         first = await kv.put("mode", b"fast")
    ...         print((await kv.get("mode")).value, await kv.get("nothing"))
    ...         await kv.update("mode", b"safe", last=first)
    >>> anyio.run(main)
    b'fast' None
    """

    def __init__(
        self,
        name: str,
        kv: KeyValue,
        *,
        domain: str | None = None,
        js: JetStreamContext | None = None,
    ) -> None:
        self.name = name
        #: The JetStream domain the bucket lives in (``None``: the connected server's).
        self.domain = domain
        self._kv = kv
        self._js = js if domain is not None else None

    async def get(self, key: str) -> KvEntry | None:
        """The entry of ``key``, or ``None`` when it is missing, deleted or empty."""
        async with _translated(self.name, key, "reading"):
            try:
                entry = await self._kv.get(key)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                return None
        if entry.value is None:
            return None
        return KvEntry(key, entry.value, entry.revision or 0)

    async def keys(self) -> list[str]:
        """The keys the bucket holds now (deleted ones excluded); ``[]`` for an empty bucket."""
        async with _translated(self.name, "*", "listing"):
            try:
                return list(await self._kv.keys())
            except nats.js.errors.NoKeysError:
                return []

    async def put(self, key: str, value: bytes) -> int:
        """Write ``value`` whatever the key holds; return the new revision."""
        async with _translated(self.name, key, "writing"):
            if self._js is not None:
                return await self._write(key, value, None)
            return await self._kv.put(key, value)

    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` only if it does not exist (else :class:`RevisionMismatch`)."""
        async with _translated(self.name, key, "creating"):
            if self._js is None:
                return await self._kv.create(key, value)
            try:
                return await self._write(key, value, 0)
            except nats.js.errors.KeyWrongLastSequenceError:
                try:  # a deleted key has a marker at some revision: create over it
                    await self._kv.get(key)
                except nats.js.errors.KeyNotFoundError as gone:
                    if gone.entry is not None:
                        return await self._write(key, value, gone.entry.revision)
                raise

    async def update(self, key: str, value: bytes, *, last: int | None) -> int:
        """Write ``key`` only if still at revision ``last`` (else :class:`RevisionMismatch`)."""
        async with _translated(self.name, key, "updating"):
            if self._js is not None:
                return await self._write(key, value, last or 0)
            return await self._kv.update(key, value, last=last)

    async def delete(self, key: str) -> None:
        """Delete ``key`` (a missing key is not an error)."""
        async with _translated(self.name, key, "deleting"):
            if self._js is not None:
                await self._write(key, b"", None, {_jsapi.KV_OPERATION: "DEL"})
                return
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                await self._kv.delete(key)

    async def purge(self, key: str) -> None:
        """Delete ``key`` and its history."""
        async with _translated(self.name, key, "purging"):
            if self._js is not None:
                await self._write(
                    key, b"", None, {_jsapi.KV_OPERATION: "PURGE", _jsapi.ROLLUP: "sub"}
                )
                return
            await self._kv.purge(key)

    async def _write(
        self, key: str, value: bytes, last: int | None, headers: dict[str, str] | None = None
    ) -> int:
        """Publish one KV operation through the bucket's domain API prefix (see the class doc)."""
        assert self._js is not None
        assert self.domain is not None
        hdrs = dict(headers or {})
        if last is not None:
            hdrs[_jsapi.EXPECTED_LAST_SUBJECT_SEQ] = str(last)
        subject = _jsapi.kv_subject(self.name, key, domain=self.domain)
        try:
            ack = await self._js.publish(subject, value, headers=hdrs or None)
        except nats.js.errors.APIError as exc:
            if exc.err_code in _jsapi.WRONG_LAST_SEQUENCE:
                raise nats.js.errors.KeyWrongLastSequenceError(description=exc.description) from exc
            raise
        return ack.seq


class Stores:
    """The KV buckets and object stores of one connection, opened once each."""

    def __init__(self, connection: Connection, log: FilteringBoundLogger) -> None:
        self._connection = connection
        self._log = log
        self._kv: dict[tuple[str | None, str], KeyValueBucket] = {}
        self._obs: dict[tuple[str | None, str], ObjectStore] = {}

    def clear(self) -> None:
        self._kv.clear()
        self._obs.clear()

    def forget_kv(self, bucket: str, domain: str | None) -> None:
        """Open ``bucket`` afresh next time (its server may have come back without it)."""
        self._kv.pop((domain, bucket), None)

    async def kv(
        self,
        bucket: str,
        *,
        history: int,
        ttl: float | None,
        replicas: int,
        storage: Literal["file", "memory"],
        domain: str | None = None,
    ) -> KeyValueBucket:
        if (domain, bucket) in self._kv:
            return self._kv[(domain, bucket)]
        js = self._connection.jetstream(domain)
        try:
            kv = await js.key_value(bucket)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                KeyValueConfig(
                    bucket=bucket,
                    history=history,
                    ttl=ttl,
                    replicas=replicas,
                    storage=StorageType.FILE if storage == "file" else StorageType.MEMORY,
                    max_value_size=self._connection.inline_limit,
                )
            )
            self._log.info("kv_created", bucket=bucket, domain=domain)
        wrapped = self._kv[(domain, bucket)] = KeyValueBucket(bucket, kv, domain=domain, js=js)
        return wrapped

    async def object_store(
        self,
        bucket: str,
        *,
        ttl: float | None,
        replicas: int,
        storage: Literal["file", "memory"],
        domain: str | None = None,
    ) -> ObjectStore:
        if (domain, bucket) in self._obs:
            return self._obs[(domain, bucket)]
        js = self._connection.jetstream(domain)
        try:
            obs = await js.object_store(bucket)
        except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
            obs = await js.create_object_store(
                bucket,
                ObjectStoreConfig(
                    bucket=bucket,
                    ttl=ttl,
                    replicas=replicas,
                    storage=StorageType.FILE if storage == "file" else StorageType.MEMORY,
                ),
            )
            self._log.info("object_store_created", bucket=bucket, domain=domain)
        self._obs[(domain, bucket)] = obs
        return obs

    async def payload_of(self, msg: Carrier) -> bytes:
        """The payload of ``msg``, read from the object store if it is a blob reference."""
        ref = msg.headers.get(H.BLOB) if msg.headers else None
        return msg.data if ref is None else await self.read_blob(ref)

    async def read_blob(self, ref: str) -> bytes:
        """The bytes of object ``bucket/name``.

        :class:`DecodeError` if it is missing, corrupt or empty;
        :class:`FabricUnavailable` (worth retrying) if the server does not answer.
        """
        bucket, _, name = ref.partition("/")
        if not bucket or not name:
            raise DecodeError(f"blob reference {ref!r} is not of the form <bucket>/<name>")
        try:
            data = await read_object(self._connection, bucket, name)
        except ObjectUnreadable as exc:
            raise DecodeError(f"blob {ref!r} cannot be read: {exc}") from exc
        if not data:
            raise DecodeError(f"blob {ref!r} is empty")
        return data

    async def offload(
        self, payload: bytes, headers: Mapping[str, str] | None, msg_id: str | None
    ) -> tuple[dict[str, str] | None, bytes]:
        """Stamp ``msg_id``; store a payload over the inline limit, leaving a reference."""
        hdrs = stamp(headers, msg_id)
        # the limit is half max_payload at least; no server runs with max_payload under 1 KiB,
        # so a small payload (the common case, on every publish) skips reading it
        if len(payload) > ALWAYS_INLINE and len(payload) > self._connection.inline_limit:
            name = msg_id or uuid.uuid4().hex
            obs = await self.object_store(BLOB_BUCKET, ttl=None, replicas=1, storage="file")
            try:
                await obs.put(name, payload)
            except Exception as exc:
                raise PayloadTooLarge(
                    f"payload of {len(payload)} bytes is over the inline limit "
                    f"({self._connection.inline_limit}) and the object store "
                    f"{BLOB_BUCKET!r} refused it: {exc}"
                ) from exc
            hdrs[H.BLOB] = f"{BLOB_BUCKET}/{name}"
            hdrs[H.BLOB_SIZE] = str(len(payload))
            payload = b""
        return (hdrs or None), payload
