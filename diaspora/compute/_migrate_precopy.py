"""The source side of one live migration: rounds of changed keys, pause, final delta, switch.

Run by the :class:`~diaspora.compute.MigrationStage` of the running
instance when a ``migrate`` request arrives (protocol and failure cases in
:mod:`diaspora.compute._migrate`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio

from diaspora.actor._runtime import flush_outputs
from diaspora.compute._migrate import MigrationPolicy, shadow_subject
from diaspora.compute._migrate_history import HistoryShipper, history_of
from diaspora.compute._migrate_state import chunks_of
from diaspora.errors import FencedOut, MigrationFailed
from diaspora.events import Migrated, MigrationAborted
from diaspora.fabric._control import control_request

if TYPE_CHECKING:
    from diaspora.compute._migrate_stage import MigrationStage

__all__ = ["PreCopy"]

#: Room left in one request for the map around the state bytes.
_ENVELOPE = 16 * 1024


class PreCopy:
    """Moves the actor of ``stage`` to the standby at worker ``to``; :meth:`run` once."""

    def __init__(self, stage: MigrationStage, to: str, policy: MigrationPolicy) -> None:
        assert stage.runtime is not None
        assert stage.slot is not None
        self.stage, self.to, self.policy = stage, to, policy
        self.runtime, self.slot = stage.runtime, stage.slot
        self.subject = shadow_subject(self.runtime.id, to)
        self.session = uuid.uuid4().hex
        self.chunk = max(4096, min(policy.chunk, self.runtime.fabric.max_payload - _ENVELOPE))
        self.rounds = 0
        self.sent = 0
        self._rate = 0.0  # bytes/s of the last round
        self._rtt = 0.0
        #: the history shipped along (None: the actor keeps none, or the standby shares it)
        self.history: HistoryShipper | None = None

    async def run(self) -> dict[str, Any]:
        """Migrate; the ``migrated`` fields. Raises :class:`MigrationFailed` (source runs on)."""
        step = "prepare"
        paused = False
        try:
            started = time.monotonic()
            ready = {"op": "prepare", "epoch": self.slot.epoch, "from": self.stage.worker}
            answer = await self._ask(ready)
            self._rtt = time.monotonic() - started
            buffer = history_of(self.runtime)
            if buffer is not None and answer.get("history"):
                self.history = HistoryShipper(buffer)
            state = self.stage.state
            state.mark_all()
            step = "precopy"
            if self.policy.precopy:
                await self._rounds()
            step = "pause"
            paused_at = time.monotonic()
            await self.stage.pause()
            paused = True
            marks = [time.monotonic()]
            await flush_outputs(self.runtime)
            marks.append(time.monotonic())
            await self._send_dirty()
            marks.append(time.monotonic())
            step = "switch"
            done = await self._switch(paused_at)
            self.runtime.log.info(
                "migration_pause",
                to=self.to,
                pause_ms=round(1000 * (marks[0] - paused_at), 2),
                flush_ms=round(1000 * (marks[1] - marks[0]), 2),
                final_delta_ms=round(1000 * (marks[2] - marks[1]), 2),
                switch_ms=round(done["downtime_ms"] - 1000 * (marks[2] - paused_at), 2),
            )
        except MigrationFailed as exc:
            await self._abort(step, str(exc), paused)
            raise
        except BaseException:
            if self.stage.moved_to is None:
                self.stage.resume()  # whatever failed here, the source must not stay paused
            raise
        return done

    async def _rounds(self) -> None:
        state, policy = self.stage.state, self.policy
        history = self.history
        total = max(1, state.total_bytes() + (history.total_bytes() if history else 0))
        previous: int | None = None
        while True:
            began, before = time.monotonic(), self.sent
            await self._send_dirty()
            self.rounds += 1
            elapsed = max(time.monotonic() - began, 1e-6)
            if self.sent > before:
                self._rate = (self.sent - before) / elapsed
            remaining = state.dirty_bytes() + (history.pending_bytes() if history else 0)
            estimate_ms = 1000 * (remaining / max(self._rate, 1.0) + 2 * self._rtt)
            if estimate_ms <= policy.budget_ms:
                return  # the rest fits the downtime budget (QEMU's rule)
            if previous is not None and remaining >= previous:
                return  # the dirty set stopped shrinking: stop and copy the rest (Xen's)
            if self.rounds >= policy.max_rounds or self.sent > policy.max_factor * total:
                raise MigrationFailed(
                    f"actor {self.runtime.id!r}: pre-copy did not converge after {self.rounds} "
                    f"rounds and {self.sent} bytes ({remaining} bytes still changed); raise "
                    "budget_ms or max_rounds, or migrate with precopy=False"
                )
            previous = remaining

    async def _send_dirty(self) -> None:
        """Ship the changed keys (each copied when its turn comes), the deleted ones, and
        the history items added since the last time."""
        state = self.stage.state
        keys, deleted = state.take_changes(), state.take_deleted()
        failure: list[MigrationFailed] = []
        slots = anyio.Semaphore(self.policy.in_flight)

        async def put(pieces: list[dict[str, Any]]) -> None:
            try:
                if not failure:
                    await self._ask({"op": "put", "pieces": pieces})
            except MigrationFailed as exc:
                failure.append(exc)
            finally:
                slots.release()

        async with anyio.create_task_group() as tg:
            if self.history is not None:
                tg.start_soon(self._send_history, self.history, failure)
            for batch in self._batches(keys):
                if failure:
                    break
                await slots.acquire()
                self.sent += sum(len(piece["b"]) for piece in batch)
                tg.start_soon(put, batch)
        if failure:
            raise failure[0]
        if deleted:
            await self._ask({"op": "delete", "keys": deleted})

    async def _send_history(self, history: HistoryShipper, failure: list[MigrationFailed]) -> None:
        """One request at a time: the standby adds each subject's items in order."""
        try:
            mark = history.bytes
            for batch in history.batches(self.chunk):
                if failure:
                    return
                self.sent += history.bytes - mark
                mark = history.bytes
                await self._ask({"op": "history", "items": batch})
        except MigrationFailed as exc:
            failure.append(exc)

    def _batches(self, keys: list[tuple[str, list[int] | None]]) -> Iterator[list[dict[str, Any]]]:
        state = self.stage.state
        batch: list[dict[str, Any]] = []
        size = 0
        for key, blocks in keys:
            if key not in state:
                continue  # deleted since: its deletion is sent
            for piece in chunks_of(key, dict.__getitem__(state, key), self.chunk, blocks):
                if batch and size + len(piece["b"]) > self.chunk:
                    yield batch
                    batch, size = [], 0
                batch.append(piece)
                size += len(piece["b"])
        if batch:
            yield batch

    async def _switch(self, paused_at: float) -> dict[str, Any]:
        request = {
            "op": "switch",
            "epoch": self.slot.epoch,
            "positions": self.stage.positions(),
            "sections": self.stage.sections(),
            "at": time.time(),
        }
        try:
            await self._ask(request)
        except MigrationFailed as exc:
            # no answer, or a refusal: claim our own epoch again, so a claim the standby
            # may still make against it fails; if that fails, the standby got the actor
            try:
                await self.slot.reclaim()
            except FencedOut:
                pass  # the standby claimed it: the migration happened
            else:
                raise MigrationFailed(f"{exc} (the source keeps the actor)") from exc
        downtime_ms = 1000 * (time.monotonic() - paused_at)
        self.stage.moved(self.to)
        done = {
            "from": self.stage.worker,
            "to": self.to,
            "rounds": self.rounds,
            "bytes": self.sent,
            "downtime_ms": downtime_ms,
        }
        await self.runtime.event(
            Migrated(
                name=self.runtime.id,
                origin=self.stage.worker,
                to=self.to,
                rounds=self.rounds,
                bytes=self.sent,
                downtime_ms=downtime_ms,
            )
        )
        return done

    async def _abort(self, step: str, reason: str, paused: bool) -> None:
        if paused:
            self.stage.resume()
        with anyio.move_on_after(self.policy.timeout):
            # the standby may be gone, or never prepared: nothing to undo there then
            with contextlib.suppress(MigrationFailed):
                await self._ask({"op": "abort"})
        await self.runtime.event(
            MigrationAborted(
                name=self.runtime.id,
                origin=self.stage.worker,
                to=self.to,
                step=step,
                reason=reason,
                rounds=self.rounds,
                bytes=self.sent,
            )
        )

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        request["s"] = self.session
        return await control_request(
            self.runtime.fabric,
            self.subject,
            request,
            timeout=self.policy.timeout,
            nobody=f"no standby of {self.runtime.id!r} at worker {self.to!r}: is it running "
            f"with Migratable({self.to!r})?",
            error=MigrationFailed,
        )
