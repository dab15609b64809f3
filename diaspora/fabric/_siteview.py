"""A fabric's view of one site: its streams, KV and object stores in that site's JetStream domain.

A :class:`~diaspora.fabric.Fabric` connects to one site's server; through
the leaf links it reaches every other site's JetStream by its domain.
:class:`SiteView` is that fabric with ``domain=`` filled in on every call, so
code that manages another site's resources cannot forget it (a missing
domain silently manages the connected site instead).

**Publishing to another site** goes by core subject interest: the message
travels to whichever stream captures its subject, across the leaf link (it
fails with :class:`~diaspora.errors.FabricUnavailable` while the link is
down; only streams buffer). :meth:`SiteView.publish` pins the stream name
and checks that the acknowledgement comes from the view's domain, and waits
out the short time a newly created remote stream's interest takes to reach
this server. Subjects must be site-scoped (no two domains capture the same
subject), or both would store the message.

>>> import anyio
>>> from diaspora.fabric import EmbeddedServer, Fabric
>>> async def main() -> None:
...     async with EmbeddedServer(jetstream_domain="edge") as edge, Fabric(edge.url) as fabric:
...         view = SiteView(fabric, "edge")
...         await view.ensure_stream("edge.ev")
...         await view.publish("edge.ev", {"n": 1})
...         print(await view.stream_bounds("edge.ev"))
>>> anyio.run(main)
(1, 1)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
from nats.js.api import PubAck, StreamInfo
from nats.js.object_store import ObjectStore

from diaspora import codec
from diaspora.errors import FabricUnavailable, PayloadTooLarge, PublishError
from diaspora.fabric._consumer import ConsumerSettings, Credit, Delivery, PullConsumer
from diaspora.fabric._naming import stream_name
from diaspora.fabric._stores import KeyValueBucket
from diaspora.fabric._streams import StreamLimits

if TYPE_CHECKING:
    from diaspora.clock import Clock
    from diaspora.fabric._fabric import Fabric

__all__ = ["SiteView"]

#: Header pinning the stream a JetStream publish must land in.
_EXPECTED_STREAM: Final = "Nats-Expected-Stream"


class SiteView:
    """``fabric``'s streams, KV buckets and object stores in JetStream domain ``domain``.

    Obtain one with :meth:`Sites.view <diaspora.fabric.Sites.view>` (by site
    name) or directly: ``SiteView(fabric, "edge")``.
    """

    def __init__(self, fabric: Fabric, domain: str) -> None:
        self.fabric = fabric
        self.domain = domain

    def __repr__(self) -> str:
        return f"SiteView({self.fabric.name!r}, domain={self.domain!r})"

    # -- streams -------------------------------------------------------------------

    async def ensure_stream(
        self, subject: str, limits: StreamLimits | None = None, **fields: Any
    ) -> StreamInfo:
        """:meth:`Fabric.ensure_stream` in this view's domain."""
        return await self.fabric.ensure_stream(subject, limits, domain=self.domain, **fields)

    async def require_stream(
        self, subject: str, *, min_duplicate_window: float | None = None
    ) -> StreamInfo:
        """:meth:`Fabric.require_stream` in this view's domain."""
        return await self.fabric.require_stream(
            subject, min_duplicate_window=min_duplicate_window, domain=self.domain
        )

    async def stream_bounds(self, subject: str) -> tuple[int, int]:
        """:meth:`Fabric.stream_bounds` in this view's domain."""
        return await self.fabric.stream_bounds(subject, domain=self.domain)

    async def duplicate_window(self, subject: str) -> float | None:
        """:meth:`Fabric.duplicate_window` in this view's domain."""
        return await self.fabric.duplicate_window(subject, domain=self.domain)

    def pull_consumer(
        self,
        subject: str,
        name: str,
        *,
        start_seq: int,
        deliver: Callable[[Delivery], None],
        credit: Credit,
        settings: ConsumerSettings | None = None,
        clock: Clock | None = None,
    ) -> PullConsumer:
        """:meth:`Fabric.pull_consumer` of a stream in this view's domain."""
        return self.fabric.pull_consumer(
            subject,
            name,
            start_seq=start_seq,
            deliver=deliver,
            credit=credit,
            settings=settings,
            clock=clock,
            domain=self.domain,
        )

    # -- key-value buckets and object stores ------------------------------------------

    async def ensure_kv(
        self,
        bucket: str,
        *,
        history: int = 1,
        ttl: float | None = None,
        replicas: int = 1,
        storage: Literal["file", "memory"] = "file",
    ) -> KeyValueBucket:
        """:meth:`Fabric.ensure_kv` in this view's domain; reads and writes go to that domain."""
        return await self.fabric._stores.kv(
            bucket, history=history, ttl=ttl, replicas=replicas, storage=storage, domain=self.domain
        )

    def forget_kv(self, bucket: str) -> None:
        """Look ``bucket`` up again at the next :meth:`ensure_kv` (and create it if it is
        missing): for a site that came back replaced, with an empty store."""
        self.fabric._stores.forget_kv(bucket, self.domain)

    async def ensure_object_store(
        self,
        bucket: str,
        *,
        ttl: float | None = None,
        replicas: int = 1,
        storage: Literal["file", "memory"] = "file",
    ) -> ObjectStore:
        """:meth:`Fabric.ensure_object_store` in this view's domain."""
        return await self.fabric._stores.object_store(
            bucket, ttl=ttl, replicas=replicas, storage=storage, domain=self.domain
        )

    # -- publishing ----------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        data: Any,
        *,
        headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
        timeout: float | None = None,
    ) -> PubAck:
        """Encode ``data`` and publish it to the stream capturing ``subject`` in this domain."""
        return await self.publish_bytes(
            subject, codec.encode(data), headers=headers, msg_id=msg_id, timeout=timeout
        )

    async def publish_bytes(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
        timeout: float | None = None,
    ) -> PubAck:
        """Publish encoded bytes to the stream capturing ``subject`` in this domain.

        Raises :class:`PublishError` when a stream of another domain stored
        it (two domains capture the subject: make subjects site-scoped),
        :class:`PayloadTooLarge` over the connected server's inline limit (a
        blob would be stored at the connected site, not this one: publish it
        with a fabric connected to this site), and :class:`FabricUnavailable`
        when no stream in this domain answers within ``timeout``.
        """
        fabric = self.fabric
        if len(payload) > fabric.inline_limit:
            raise PayloadTooLarge(
                f"publish to {subject!r} in domain {self.domain!r}: {len(payload)} bytes is over "
                f"the inline limit ({fabric.inline_limit}); large payloads are offloaded to the "
                "connected site's object store, so publish them with a fabric of that site"
            )
        hdrs = {**(headers or {}), _EXPECTED_STREAM: stream_name(subject)}
        timeout = fabric.request_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                ack = await fabric.publish_bytes(
                    subject,
                    payload,
                    headers=hdrs,
                    msg_id=msg_id,
                    timeout=max(deadline - time.monotonic(), 0.001),
                )
                break
            except FabricUnavailable:
                # a stream just created in another domain: its interest reaches us shortly
                if time.monotonic() >= deadline:
                    raise
                await self.stream_bounds(subject)  # StreamNotFound if there is none at all
                await anyio.sleep(0.05)
        if ack.domain != self.domain:
            raise PublishError(
                f"publish to {subject!r}: stored in stream {ack.stream!r} of domain "
                f"{ack.domain!r}, not of domain {self.domain!r}; another site captures "
                "the same subject, give each site its own subjects"
            )
        return ack
