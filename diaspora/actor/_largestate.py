"""Where a checkpoint's state goes when it is too large for its KV record.

By default, the object store ``diaspora-checkpoints`` of the connected
site (read back over the object's chunk subject, its SHA-256 checked). An
actor whose ``checkpoint_storage`` is a :class:`~diaspora.storage.StorageSpec`
keeps it in resilient storage instead: chunks replicated or erasure-coded
over the spec's sites, so a restart finds its state although a site is
lost. The record names the state ``storage:<bucket>/<name>`` and carries
the spec (``state_store``), so whoever reads the record (a restart, a
migration standby, ``peek``) finds the state without the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from structlog.typing import FilteringBoundLogger

from diaspora.actor._checkpointstore import CheckpointStore
from diaspora.errors import CheckpointError, ObjectUnreadable, StorageError
from diaspora.fabric import Fabric
from diaspora.storage import StorageSpec

__all__ = ["STORAGE_PREFIX", "delete_state", "load_state", "store_state"]

#: A ``state_ref`` in resilient storage: ``storage:<bucket>/<name>``.
STORAGE_PREFIX: Final = "storage:"


def _connected(store: CheckpointStore) -> Fabric:
    """The fabric resilient storage reaches its sites from (a site's store carries one)."""
    fabric = store if isinstance(store, Fabric) else getattr(store, "fabric", None)
    if not isinstance(fabric, Fabric):
        raise CheckpointError(
            f"checkpoint store {store!r} has no fabric to reach resilient storage from"
        )
    return fabric


async def store_state(
    fabric: CheckpointStore, bucket: str, name: str, blob: bytes, spec: StorageSpec | None
) -> str:
    """Store ``blob``; the ``state_ref`` naming it."""
    if spec is not None:
        async with spec.open(_connected(fabric)) as storage:
            await storage.put(name, blob)
        return f"{STORAGE_PREFIX}{spec.bucket}/{name}"
    obs = await fabric.ensure_object_store(bucket)
    await obs.put(name, blob)
    return f"{bucket}/{name}"


async def load_state(
    fabric: CheckpointStore, actor: str, key: str, ref: str, store: Mapping[str, Any] | None
) -> bytes:
    """The bytes ``ref`` names (``store``: the spec the record carries, for a storage ref)."""
    where = f"actor {actor!r}: checkpoint state {ref!r}"
    advice = f"delete the key diaspora-checkpoints/{key} to start the actor afresh"
    try:
        if ref.startswith(STORAGE_PREFIX):
            if not store:
                raise CheckpointError(f"{where}: the record names no storage spec; {advice}")
            spec = StorageSpec.from_dict(store)
            async with spec.open(_connected(fabric)) as storage:
                data = await storage.get(ref[len(STORAGE_PREFIX) :].partition("/")[2])
        else:
            bucket, _, name = ref.partition("/")
            data = await fabric.read_object(bucket, name)
    except (ObjectUnreadable, StorageError) as exc:
        raise CheckpointError(f"{where} cannot be read: {exc}; {advice}") from exc
    if not data:
        raise CheckpointError(f"{where} is empty")
    return data


async def delete_state(
    fabric: CheckpointStore, ref: str, spec: StorageSpec | None, log: FilteringBoundLogger
) -> None:
    """Delete the state ``ref`` names (an orphan wastes space but breaks nothing)."""
    try:
        if ref.startswith(STORAGE_PREFIX):
            if spec is not None:
                async with spec.open(_connected(fabric)) as storage:
                    await storage.delete(ref[len(STORAGE_PREFIX) :].partition("/")[2])
            return
        bucket, _, name = ref.partition("/")
        obs = await fabric.ensure_object_store(bucket)
        await obs.delete(name)
    except Exception as exc:
        log.warning("checkpoint_object_not_deleted", ref=ref, error=repr(exc))
