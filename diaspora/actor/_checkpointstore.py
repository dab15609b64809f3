"""Where a checkpoint slot keeps its record: what :class:`~diaspora.actor.CheckpointSlot` needs.

A :class:`~diaspora.fabric.Fabric` is one (the connected site's bucket and
object store). A pool's movable actors keep theirs at one site of the pool
whichever site they run at (:class:`diaspora.compute.CheckpointAt`), through
a store that reaches that site's JetStream domain over the leaf links.
"""

from __future__ import annotations

from typing import Protocol

from nats.js.object_store import ObjectStore

from diaspora.fabric import KeyValueBucket

__all__ = ["CheckpointStore"]


class CheckpointStore(Protocol):
    """The KV bucket and object store a checkpoint lives in, and the record size limit."""

    @property
    def inline_limit(self) -> int:
        """The largest value one KV write may carry (state above it goes to objects)."""
        ...

    async def ensure_kv(self, bucket: str) -> KeyValueBucket: ...

    async def ensure_object_store(self, bucket: str) -> ObjectStore: ...

    async def read_object(self, bucket: str, name: str) -> bytes: ...
