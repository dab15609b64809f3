"""The migration stage: a migratable actor's owner claim, standby, pause gate and control.

:class:`Migratable` (a stage factory, picklable into process nodes) is
installed on the actor at every worker that may host it. At a start its
:class:`MigrationStage` reads the checkpoint record: placed here (or nowhere
yet, at the ``home`` worker) it claims the record by compare-and-set and
the actor runs; placed elsewhere it becomes a standby, which takes state
on ``diaspora.migrate.<actor>.<worker>`` until a switch hands it the actor
(see :mod:`diaspora.compute._migrate`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from diaspora.actor import ActorRuntime
from diaspora.actor._checkpoint import Checkpoint, CheckpointSlot, Section
from diaspora.actor._runtime import stop_requested
from diaspora.compute._migrate import MigrationPolicy, migrate_subject, shadow_subject
from diaspora.compute._migrate_history import HistoryCopy, stop_serving
from diaspora.compute._migrate_precopy import PreCopy
from diaspora.compute._migrate_state import MigratableState, StateAssembly
from diaspora.errors import ChildShutdown, ConfigError, FencedOut, HistoryError, MigrationFailed
from diaspora.fabric._control import Answerer
from diaspora.stage import Host, InputItem, Next, Stage

__all__ = ["INLINE_LIMIT", "Migratable", "MigrationStage"]

#: A migratable actor's checkpoints keep a state larger than this in the object store,
#: so the record the switch claims by compare-and-set stays small (a fast switch).
INLINE_LIMIT: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Migratable:
    """Makes an actor migratable at worker ``worker`` (a stage factory).

    ``home``: the worker that runs the actor before any migration (one per
    actor). ``state`` names the actor's :class:`MigratableState` attribute;
    its ``snapshot()`` must return that state and ``restore()`` accept a dict.

    >>> stage = Migratable("edge-1", home=True)()
    >>> stage.worker, stage.name
    ('edge-1', 'migration')
    """

    worker: str
    home: bool = False
    state: str = "state"

    def __call__(self) -> MigrationStage:
        return MigrationStage(self.worker, home=self.home, state_attr=self.state)


class MigrationStage(Stage):
    """Claims as owner or waits as standby; while owner, pauses and moves on request."""

    name = "migration"

    def __init__(self, worker: str, *, home: bool = False, state_attr: str = "state") -> None:
        self.worker, self.home, self.state_attr = worker, home, state_attr
        self.slot: CheckpointSlot | None = None
        self.runtime: ActorRuntime | None = None
        self._gate: anyio.Event | None = None
        self.moved_to: str | None = None
        self._busy = 0
        self._idle = anyio.Event()
        self._done: dict[str, int] = {}
        self._lock = anyio.Lock()
        self._stepped_down = anyio.Event()

    # -- ownership ------------------------------------------------------------------------

    async def claim(self, host: Host, started: Callable[[], None]) -> CheckpointSlot:
        while True:
            record = await CheckpointSlot.peek(host.fabric, host.id)
            placed = record.placement if record is not None else None
            mine = placed == self.worker or (placed is None and self.home)
            if mine:
                try:
                    self.slot = await CheckpointSlot.claim(
                        host.fabric,
                        host.id,
                        expect_epoch=None if record is None else record.epoch,
                        placement=self.worker,
                        inline_limit=INLINE_LIMIT,
                    )
                    return self.slot
                except FencedOut:
                    continue  # the record moved meanwhile: look again
            started()  # a standby is up and running, although the actor is not
            host.log.info("migration_standby", worker=self.worker, placed=placed)
            standby = _Standby(host, self.worker)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_until_stopped, host, standby.switched, tg.cancel_scope)
                self.slot = await standby.wait()
                tg.cancel_scope.cancel()
            if self.slot is None:
                raise ChildShutdown(f"standby of {host.id!r} at worker {self.worker!r} stopped")
            return self.slot

    # -- the owner's hooks ------------------------------------------------------------------

    async def setup(self, host: Host) -> None:
        if not isinstance(host, ActorRuntime):
            raise ConfigError(f"actor {host.id!r}: the migration stage needs an ActorRuntime")
        state = getattr(host.actor, self.state_attr, None)
        if not isinstance(state, MigratableState):
            raise ConfigError(
                f"actor {host.id!r}: migratable actors keep their state in a MigratableState "
                f"attribute {self.state_attr!r} (found {type(state).__name__}); set it in "
                "__init__ and in restore()"
            )
        self.runtime = host
        await host.task_group.start(self._serve, host)

    async def _serve(self, host: ActorRuntime, *, task_status: TaskStatus[None]) -> None:
        answerer = Answerer(self._answer, answered=self._on_answered)
        async with host.fabric.subscription(migrate_subject(host.id), answerer.handle, flush=True):
            task_status.started()
            await self._stepped_down.wait()  # moved: the new owner answers from now on

    def _on_answered(self, answer: Mapping[str, Any]) -> None:
        if self.moved_to is not None:
            self._stepped_down.set()

    async def _answer(self, subject: str, request: Mapping[str, Any]) -> dict[str, Any]:
        to = request.get("to")
        if not isinstance(to, str) or not to:
            return {"ok": False, "error": f"no worker to migrate to in {dict(request)!r}"}
        if to == self.worker:
            return {"ok": False, "error": f"actor already runs on worker {to!r}"}
        try:
            policy = MigrationPolicy.of(request.get("policy", {}))
        except (ConfigError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
        if self._lock.locked():
            return {"ok": False, "error": "a migration of this actor is under way"}
        async with self._lock:
            try:
                done = await PreCopy(self, to, policy).run()
            except MigrationFailed as exc:
                return {"ok": False, "error": str(exc)}
        return {"ok": True, **done}

    async def inbound(self, item: InputItem, next: Next) -> None:
        if item.origin is None:
            while self._gate is not None:
                await self._gate.wait()
            if self.moved_to is not None:
                raise FencedOut(f"actor migrated to worker {self.moved_to!r}: this one steps down")
        self._busy += 1
        try:
            await next(item)
        finally:
            self._busy -= 1
            if item.origin is None:
                self._done[item.subject] = item.seq
            if self._busy == 0:
                self._idle.set()

    # -- what the pre-copy drives -------------------------------------------------------------

    @property
    def state(self) -> MigratableState:
        assert self.runtime is not None
        found: MigratableState = getattr(self.runtime.actor, self.state_attr)
        return found

    async def pause(self) -> None:
        """Stop letting inputs in; return once the one being handled is done."""
        self._gate = anyio.Event()
        while self._busy:
            self._idle = anyio.Event()
            await self._idle.wait()
        for _ in range(3):  # the outer stages finish their bookkeeping of that input
            await anyio.lowlevel.checkpoint()

    def resume(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.set()

    def moved(self, to: str) -> None:
        """The standby at ``to`` owns the actor now: stop (the held input raises FencedOut)."""
        self.moved_to = to
        self.resume()
        if self.runtime is not None:
            stop_serving(self.runtime)  # its history is served by the new owner now
            self.runtime.request_stop()

    def positions(self) -> dict[str, int]:
        """The input positions the state includes (the driver's, and any just handled)."""
        assert self.runtime is not None
        found = dict(self.runtime.positions)
        for subject, seq in self._done.items():
            found[subject] = max(found.get(subject, 0), seq)
        return found

    def sections(self) -> dict[str, dict[str, Any]]:
        assert self.runtime is not None
        return {
            stage.section: {"v": stage.section_version, "data": stage.snapshot()}
            for stage in self.runtime.stages
            if stage.section is not None
        }


async def _until_stopped(host: Host, switched: anyio.Event, scope: anyio.CancelScope) -> None:
    """Cancel a standby's wait once its runtime is asked to stop (and no switch began)."""
    if not isinstance(host, ActorRuntime):
        return
    await stop_requested(host)
    if not switched.is_set():
        scope.cancel()


class _Standby:
    """Receives a migrating state at ``worker``; :meth:`wait` returns the slot it claims."""

    def __init__(self, host: Host, worker: str) -> None:
        self.host, self.worker = host, worker
        self.session: str | None = None
        self.copy = StateAssembly()
        self.history = HistoryCopy()
        self.slot: CheckpointSlot | None = None
        self.switched = anyio.Event()
        self._answered = anyio.Event()

    async def wait(self) -> CheckpointSlot | None:
        """The slot a switch claimed (``None`` if cancelled before one began)."""
        subject = shadow_subject(self.host.id, self.worker)
        answerer = Answerer(self._answer, answered=self._on_answered)
        try:
            async with self.host.fabric.subscription(subject, answerer.handle, flush=True):
                await self._answered.wait()  # the switch's answer is out: leave
        finally:
            self.history.close()
        return self.slot

    def _on_answered(self, answer: Mapping[str, Any]) -> None:
        if self.switched.is_set():
            self._answered.set()

    async def _answer(self, subject: str, request: Mapping[str, Any]) -> dict[str, Any]:
        op, session = request.get("op"), request.get("s")
        if op == "ping":
            return {"ok": True, "worker": self.worker}
        if op == "prepare":
            self.session, self.copy = str(session), StateAssembly()
            return {"ok": True, "history": self.history.open(self.host)}
        if self.switched.is_set():
            return {"ok": False, "error": "this standby took the actor over already"}
        if session != self.session:
            return {"ok": False, "error": f"session {session!r} is not the prepared one"}
        if op == "put":
            for piece in request["pieces"]:
                self.copy.put(piece)
            return {"ok": True}
        if op == "delete":
            self.copy.delete(request["keys"])
            return {"ok": True}
        if op == "history":
            try:
                self.history.put(request["items"])
            except HistoryError as exc:
                return {"ok": False, "error": f"worker {self.worker!r}: {exc}"}
            return {"ok": True}
        if op == "abort":
            self.session, self.copy = None, StateAssembly()
            self.history.close()
            return {"ok": True}
        if op == "switch":
            return await self._switch(request)
        return {"ok": False, "error": f"unknown operation {op!r}"}

    async def _switch(self, request: Mapping[str, Any]) -> dict[str, Any]:
        host = self.host
        try:
            slot = await CheckpointSlot.claim(
                host.fabric,
                host.id,
                expect_epoch=int(request["epoch"]),
                placement=self.worker,
                load_state=False,
                inline_limit=INLINE_LIMIT,
            )
        except FencedOut as exc:
            return {"ok": False, "error": str(exc)}
        self.history.close()  # written out: the new owner opens it with the items shipped
        stored = slot.current
        slot.current = Checkpoint(
            actor=host.id,
            version=stored.version if stored is not None else 0,
            epoch=slot.epoch,
            instance=slot.instance,
            positions={str(k): int(v) for k, v in request["positions"].items()},
            sections={
                str(name): Section(int(sec["v"]), sec["data"])
                for name, sec in request["sections"].items()
            },
            state=dict(self.copy.values),
            snapshot_at=float(request["at"]),
            state_ref=stored.state_ref if stored is not None else None,
            placement=self.worker,
        )
        self.slot = slot
        self.switched.set()
        host.log.info("migration_switched", worker=self.worker, epoch=slot.epoch)
        return {"ok": True}
