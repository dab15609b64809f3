"""Guests: a running pool worker takes another actor, or lets one go, on request.

A worker is started with the actors of its order; an actor that moves to its
site later (its own site lost, or going back home) joins a worker already
running there when one has room (``PoolSpec.actors_per_worker``), rather
than waiting for a new process. Each worker's tree has a ``guests`` child
(:class:`GuestHost`) that knows every actor of the pool that may move
(:attr:`~diaspora.compute.WorkerOrder.guests`) and serves
``diaspora.control.pool.<pool>.<worker>``:

- ``{"op": "host", "actor": id}`` starts the actor under the worker's own
  guest supervisor (it claims its checkpoint as any start does: the fence
  makes any older instance step down), answering once it started;
- ``{"op": "release", "actor": id}`` stops it by its shutdown policy (its
  final checkpoint written), answering once it stopped.

The controller asks through the provider (:func:`ask_worker`, :func:`ask_guest`); a worker that
does not answer is not used (a new worker is started, or the old one stopped).

>>> guest_subject("recon", "recon-hpc-1")
'diaspora.control.pool.recon.recon-hpc-1'
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
from anyio.abc import TaskStatus

from diaspora.compute._pools import AtPath, PoolActor
from diaspora.compute._provider import WorkerOrder, WorkerState
from diaspora.errors import ControlError, DiasporaError
from diaspora.events import LogSink
from diaspora.fabric._control import Answerer, control_request
from diaspora.log import get_logger
from diaspora.supervision import Supervisor
from diaspora.supervision._context import child_events, current_child
from diaspora.supervision._spec import ChildSpec, Restart, SupervisorSpec

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["GuestHost", "GuestStart", "Held", "ask_guest", "ask_worker", "guest_subject"]

_TIMEOUT: Final = 15.0
_ID_BAD = re.compile(r"[^-_A-Za-z0-9]")


def guest_subject(pool: str, worker: str) -> str:
    """The control subject a pool's worker serves ``host`` and ``release`` on."""
    return f"diaspora.control.pool.{pool}.{worker}"


def _child_id(actor: str) -> str:
    return "g-" + _ID_BAD.sub("_", actor)


async def ask_guest(fabric: Fabric, pool: str, worker: str, op: str, actor: str) -> bool:
    """Ask ``worker`` to ``host`` or ``release`` ``actor``; whether it did."""
    request = {"op": op, "actor": actor, "request": uuid.uuid4().hex}
    try:
        await control_request(
            fabric,
            guest_subject(pool, worker),
            request,
            timeout=_TIMEOUT,
            nobody=f"worker {worker!r} of pool {pool!r}",
        )
    except ControlError as exc:
        get_logger(pool=pool).warning("guest_refused", worker=worker, op=op, error=str(exc))
        return False
    return True


class Held(Protocol):
    """A provider's record of one of its workers: its order and its state."""

    @property
    def order(self) -> WorkerOrder: ...

    @property
    def state(self) -> WorkerState: ...


async def ask_worker(
    worker: Held | None, fabric: Callable[[str], Fabric], op: str, actor: str
) -> bool:
    """A provider's ``host`` and ``release``: ask ``worker`` (``None``: one it does not know)
    to ``op`` ``actor`` through its site's fabric (``fabric(site)``); ``False`` unless the
    worker runs and did."""
    if worker is None or worker.state is not WorkerState.RUNNING:
        return False
    order = worker.order
    return await ask_guest(fabric(order.site), order.pool, order.id, op, actor)


@dataclass(frozen=True, slots=True)
class GuestStart:
    """The start function of a worker's ``guests`` child: ``guests`` are the actors it may take."""

    pool: str
    worker: str
    guests: tuple[PoolActor, ...]
    fabric: Fabric | None = None

    def with_fabric(self, fabric: Fabric | None) -> GuestStart:
        return dataclasses.replace(self, fabric=fabric)

    def __call__(self, *args: Any) -> GuestHost:
        if self.fabric is None:
            raise ControlError(f"worker {self.worker!r}: its guests child has no fabric bound")
        return GuestHost(self.pool, self.worker, self.guests, self.fabric)


class GuestHost:
    """Runs the actors a worker takes after its start, under a supervisor of its own."""

    def __init__(
        self, pool: str, worker: str, guests: tuple[PoolActor, ...], fabric: Fabric
    ) -> None:
        self.pool, self.worker, self.fabric = pool, worker, fabric
        self.guests: Mapping[str, PoolActor] = {a.id: a for a in guests}
        here = current_child()
        self.supervisor = Supervisor(
            SupervisorSpec([], intensity=1, period=5.0),
            name=here.path,
            on_event=child_events(LogSink()),
        )
        self._lock = anyio.Lock()
        self._log = get_logger(pool=pool, worker=worker)

    def request_stop(self) -> None:
        self.supervisor.request_stop()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        answerer = Answerer(self._answer)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._supervise, tg.cancel_scope)
            await self.supervisor.started()
            async with self.fabric.subscription(
                guest_subject(self.pool, self.worker), answerer.handle, flush=True
            ):
                task_status.started()
                await anyio.sleep_forever()

    async def _supervise(self, scope: anyio.CancelScope) -> None:
        await self.supervisor.run()  # a guest failing past its intensity fails the worker
        scope.cancel()

    async def _answer(self, subject: str, request: Mapping[str, Any]) -> dict[str, Any]:
        op, actor_id = request.get("op"), str(request.get("actor"))
        actor = self.guests.get(actor_id)
        if actor is None:
            return {"ok": False, "error": f"{actor_id!r} is not an actor this worker may host"}
        child = _child_id(actor_id)
        async with self._lock:
            try:
                if op == "host":
                    start = AtPath(actor.id, actor.start).with_fabric(self.fabric)
                    await self.supervisor.start_child(
                        ChildSpec(child, start, restart=Restart.TRANSIENT)
                    )
                elif op == "release":
                    await self.supervisor.terminate_child(child)
                    await self.supervisor.delete_child(child)
                else:
                    return {"ok": False, "error": f"unknown operation {op!r}"}
            except DiasporaError as exc:
                return {"ok": False, "error": f"{op} {actor_id!r}: {exc}"}
        self._log.info("guest_" + str(op), actor=actor_id)
        return {"ok": True}
