"""A movable actor's checkpoint, kept at one site whichever site the actor runs at.

Each site of a hierarchical fabric has its own JetStream domain, so an
actor's checkpoint normally lives where the actor runs: move the actor to
another site and it starts there without its state. A pool with
``checkpoint_site`` gives each of its movable actors the
:class:`CheckpointAt` stage: its checkpoint record (and any state object)
lives in that site's domain, reached over the leaf links
(``$JS.<domain>.API.$KV...``), from every site the actor may run at.

There is one record, so the compare-and-set fence is the one of a single
site: an instance at a site cut off from the checkpoint site cannot write it
(its checkpoint writes are retried until the link returns), an instance
started elsewhere claims the record and bumps its epoch, and the cut-off
one is fenced out by its next write. The moved actor resumes from the last checkpoint and
replays its inputs after it; the outputs it emits again carry the same
message ids, which the output streams store once.

>>> stage = CheckpointAt("hpc")()
>>> stage.domain, stage.name
('hpc', 'checkpoint_at')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.js.object_store import ObjectStore

from diaspora.actor._checkpoint import CheckpointSlot
from diaspora.errors import BridgeError, ObjectUnreadable
from diaspora.fabric import KeyValueBucket, SiteView, check_site
from diaspora.stage import Host, Stage

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["CheckpointAt", "SiteStore", "reaches"]


async def reaches(fabric: Fabric, domain: str) -> bool:
    """Whether ``fabric``'s server reaches JetStream domain ``domain`` now (its links are up)."""
    if not fabric.is_connected:
        return False
    try:
        await check_site(fabric, domain)
    except BridgeError:
        return False
    return True


class SiteStore:
    """The checkpoint bucket and object store of JetStream domain ``domain``, through ``fabric``.

    A :class:`~diaspora.actor._checkpointstore.CheckpointStore`: writes go
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


@dataclass(frozen=True, slots=True)
class CheckpointAt:
    """Keeps the actor's checkpoint in JetStream domain ``domain`` (a stage factory,
    picklable into worker processes)."""

    domain: str

    def __call__(self) -> AnchorStage:
        return AnchorStage(self.domain)


class AnchorStage(Stage):
    """Claims the actor's checkpoint record in the domain of its checkpoint site."""

    name = "checkpoint_at"

    def __init__(self, domain: str) -> None:
        self.domain = domain

    async def claim(self, host: Host, started: Callable[[], None]) -> CheckpointSlot:
        host.log.info("checkpoint_at", domain=self.domain)
        return await CheckpointSlot.claim(SiteStore(host.fabric, self.domain), host.id)
