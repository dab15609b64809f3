"""Who claims an actor's checkpoint at a start: a stage that takes it over, or the runtime.

A migration standby (:mod:`diaspora.compute._migrate_stage`) claims in its
:meth:`~diaspora.stage.Stage.claim` hook, after reporting the start, and
waits there; any other start claims the record at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from anyio.abc import TaskStatus

from diaspora.actor._checkpoint import CheckpointSlot
from diaspora.stage import Host, Stage

if TYPE_CHECKING:
    from diaspora.storage import StorageSpec

__all__ = ["Status", "claim_slot"]


class Status:
    """``task_status.started()`` once, whoever calls it first (a standby stage, or the driver)."""

    def __init__(self, task_status: TaskStatus[None]) -> None:
        self._status, self._done = task_status, False

    def started(self) -> None:
        if not self._done:
            self._done = True
            self._status.started()


async def claim_slot(
    runtime: Host, stages: Sequence[Stage], status: Status, storage: StorageSpec | None = None
) -> CheckpointSlot:
    """The checkpoint slot of this start: a stage's own claim (a migration standby), or ours."""
    for stage in stages:
        if stage.overrides("claim"):
            slot = await stage.claim(runtime, status.started)
            if slot is not None:
                assert isinstance(slot, CheckpointSlot)
                slot.storage = slot.storage or storage
                return slot
    return await CheckpointSlot.claim(runtime.fabric, runtime.id, storage=storage)
