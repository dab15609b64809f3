"""One site's fragment stream: the JetStream store under resilient storage (diaspora.storage).

Each site keeps the fragments and copies of a storage bucket in a stream of
its own domain, ``DSPF_<site>_<bucket>``, capturing
``dsp.frag.<site>.<bucket>.>`` (subjects scoped by site: no two domains
capture the same subject), one message per fragment and at most one per
subject. A fragment is written with one acknowledged publish (pinned to
the stream, its acknowledgement checked to come from the site's domain),
read with one direct get of the subject's last message, and deleted by
purging its subject. This is the object store's own storage without its
meta message and 128 KiB chunking: a fragment is at most a few MiB, under
the server's ``max_payload``.

>>> import anyio
>>> from diaspora.fabric import EmbeddedServer, Fabric
>>> async def main() -> None:
...     async with EmbeddedServer(jetstream_domain="a") as s, Fabric(s.url) as fabric:
...         site = FragmentSite(fabric, "a", "a", "demo")
...         await site.ensure()
...         await site.put("obj.1.0.0", b"bytes")
...         print(await site.get("obj.1.0.0"), await site.get("nothing"))
...         await site.delete("obj.>")
...         print(await site.keys("obj.>"))
>>> anyio.run(main)
b'bytes' None
[]
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

import nats.errors
import nats.js.errors
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from diaspora.errors import FabricUnavailable

if TYPE_CHECKING:
    from diaspora.fabric._fabric import Fabric

__all__ = ["FragmentSite"]

#: JetStream "no message" (10037) and "no stream" (10059) answers.
_GONE: Final = frozenset({10037, 10059})
#: "stream name already in use" (with another config): it exists, keep it.
_IN_USE: Final = 10058


class FragmentSite:
    """The fragments of storage bucket ``bucket`` at site ``site`` (JetStream domain ``domain``).

    Every call raises :class:`~diaspora.errors.FabricUnavailable` naming the
    site when its domain does not answer (server down, leaf link cut) or
    does not answer within ``timeout`` seconds (default: the fabric's).
    """

    def __init__(
        self, fabric: Fabric, site: str, domain: str, bucket: str, *, timeout: float | None = None
    ) -> None:
        self.site, self.domain, self.bucket = site, domain, bucket
        self.stream = f"DSPF_{site}_{bucket}"
        self.prefix = f"dsp.frag.{site}.{bucket}"
        self._connection = fabric._connection
        self.timeout = fabric.request_timeout if timeout is None else timeout
        self._ensured = False
        #: whether the stream exists (``None``: not checked since the last failure)
        self._present: bool | None = None

    def forget(self) -> None:
        """Check the stream again before the next read (the site may have been replaced)."""
        self._ensured, self._present = False, None

    def __repr__(self) -> str:
        return f"FragmentSite({self.site!r}, domain={self.domain!r}, bucket={self.bucket!r})"

    @contextlib.asynccontextmanager
    async def _answering(self, action: str) -> AsyncIterator[None]:
        try:
            yield
        except FabricUnavailable:
            raise
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
            raise FabricUnavailable(
                f"site {self.site!r} (domain {self.domain!r}): {action} failed: {exc!r}; "
                "is its server up and its leaf link connected?"
            ) from exc

    def _js(self) -> nats.js.JetStreamContext:
        return self._connection.client.jetstream(domain=self.domain, timeout=self.timeout)

    async def ensure(self) -> None:
        """Create the site's fragment stream if it is missing (file storage, direct gets)."""
        if self._ensured:
            return
        async with self._answering(f"creating stream {self.stream}"):
            config = StreamConfig(
                name=self.stream,
                subjects=[f"{self.prefix}.>"],
                storage=StorageType.FILE,
                max_msgs_per_subject=1,
                discard=DiscardPolicy.OLD,
                allow_direct=True,
                num_replicas=1,
            )
            try:
                await self._js().add_stream(config)
            except nats.js.errors.APIError as exc:
                if exc.err_code != _IN_USE:
                    raise
        self._ensured = self._present = True

    async def _answers(self) -> bool:
        """Whether the site's JetStream answers (it is up, only the stream is missing)."""
        try:
            await self._js().account_info()
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError):
            return False
        return True

    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` as fragment ``key`` (replacing what the key held)."""
        async with self._answering(f"writing fragment {key}"):
            try:
                ack = await self._js().publish(
                    f"{self.prefix}.{key}", data, stream=self.stream, timeout=self.timeout
                )
            except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError):
                if not await self._answers():
                    raise
                self._ensured = False  # the site is up without its stream (a replaced site)
                await self.ensure()
                ack = await self._js().publish(
                    f"{self.prefix}.{key}", data, stream=self.stream, timeout=self.timeout
                )
        if ack.domain not in (self.domain, None) or ack.stream != self.stream:
            raise FabricUnavailable(
                f"site {self.site!r}: fragment {key} was stored by stream {ack.stream!r} of "
                f"domain {ack.domain!r}, not {self.stream!r} of {self.domain!r}"
            )

    async def get(self, key: str) -> bytes | None:
        """The bytes of fragment ``key``, or ``None`` when the site does not hold it."""
        async with self._answering(f"reading fragment {key}"):
            if self._present is None:  # a direct get to a missing stream waits for a timeout
                try:
                    await self._js().stream_info(self.stream)
                    self._present = True
                except nats.js.errors.NotFoundError:
                    self._present = False
            if not self._present:
                return None
            try:
                raw = await self._js().get_msg(
                    self.stream, subject=f"{self.prefix}.{key}", direct=True
                )
            except nats.js.errors.NotFoundError:
                return None
            except nats.js.errors.APIError as exc:
                if exc.err_code in _GONE:
                    return None
                raise
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if await self._answers():  # up, but no stream answers direct gets: none held
                    self.forget()
                    return None
                raise
        return raw.data or b""

    async def stored_at(self, key: str) -> float | None:
        """When fragment ``key`` was stored (Unix seconds), or ``None`` if it is not held."""
        async with self._answering(f"reading fragment {key}"):
            try:
                raw = await self._js().get_msg(
                    self.stream, subject=f"{self.prefix}.{key}", direct=True
                )
            except nats.js.errors.NotFoundError:
                return None
        return raw.time.timestamp() if raw.time is not None else None

    async def delete(self, pattern: str) -> None:
        """Drop the fragments whose keys match ``pattern`` (``*`` and ``>`` wildcards)."""
        async with self._answering(f"deleting fragments {pattern}"):
            try:
                await self._js().purge_stream(self.stream, subject=f"{self.prefix}.{pattern}")
            except nats.js.errors.NotFoundError:
                return

    async def keys(self, pattern: str = ">") -> list[str]:
        """The keys of the fragments held that match ``pattern``."""
        async with self._answering(f"listing fragments {pattern}"):
            try:
                info = await self._js().stream_info(
                    self.stream, subjects_filter=f"{self.prefix}.{pattern}"
                )
            except nats.js.errors.NotFoundError:
                return []
        cut = len(self.prefix) + 1
        return sorted(s[cut:] for s in (info.state.subjects or {}))
