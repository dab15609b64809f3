"""The checkpoint bucket and object store of another site's JetStream domain.

What a pool's movable actors keep their checkpoint in
(:class:`diaspora.compute.CheckpointAt`): one record at one site, whichever
site the actor runs at, reached over the leaf links.
"""

from __future__ import annotations

from nats.js.object_store import ObjectStore

from diaspora.errors import ObjectUnreadable
from diaspora.fabric._fabric import Fabric
from diaspora.fabric._siteview import SiteView
from diaspora.fabric._stores import KeyValueBucket

__all__ = ["ObjectStore", "SiteStore"]


class SiteStore:
    """The checkpoint bucket and object store of JetStream domain ``domain``, through ``fabric``.

    A checkpoint store (:class:`diaspora.actor.CheckpointSlot` takes one): writes go
    through the domain's API prefix (KV writes with their compare-and-set
    revision), object reads through nats-py's object store of that domain.
    """

    def __init__(self, fabric: Fabric, domain: str) -> None:
        self.fabric, self.domain = fabric, domain
        self._view = SiteView(fabric, domain)

    @property
    def inline_limit(self) -> int:
        return self.fabric.inline_limit

    async def ensure_kv(self, bucket: str) -> KeyValueBucket:
        return await self._view.ensure_kv(bucket)

    async def ensure_object_store(self, bucket: str) -> ObjectStore:
        return await self._view.ensure_object_store(bucket)

    async def read_object(self, bucket: str, name: str) -> bytes:
        try:
            found = await (await self.ensure_object_store(bucket)).get(name)
        except Exception as exc:
            raise ObjectUnreadable(
                f"object {bucket}/{name} in domain {self.domain!r}: {exc!r}"
            ) from exc
        if found.data is None:
            raise ObjectUnreadable(f"object {bucket}/{name} in domain {self.domain!r} is empty")
        return found.data
