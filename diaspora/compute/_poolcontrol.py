"""The pool controller: keeps every site at its minimum, even while idle.

:class:`PoolController` is a :class:`~diaspora.supervision.Runnable` (a
child of the tree, ``pool-<name>`` in a workflow file). Every
``check_interval`` seconds it compares what its :class:`Provider` reports
with what the :class:`PoolSpec` wants, and acts:

- **deficit**: a site with fewer workers than it wants (its ``min``, plus its
  share of ``total_min``) gets new ones at once, whether or not work is
  pending; the first missing worker is a :class:`~diaspora.events.Deficit`
  event, the site back at its minimum (every wanted worker running) a
  :class:`~diaspora.events.Healed` event with ``after_s``, the time it took.
- **intensity per site**: each worker that exits unasked counts against its
  site; more than ``intensity`` exits within ``period`` seconds and the
  site is degraded (:class:`~diaspora.events.SiteDegraded`, ``reason =
  "intensity"``): no worker starts there for ``retry_after`` seconds, so a
  crash-looping site does not thrash while the other sites heal.
- **site lost**: a site whose provider health check fails is degraded too
  (``reason = "unreachable"``); its workers are stopped, its *movable*
  actors go to the up site with the most room (:class:`~diaspora.events.Moved`),
  its pinned actors wait and start there again when it answers.
- **placement**: an actor without a worker is given to a new worker at its
  site (:class:`~diaspora.events.Placed`); it resumes from its checkpoint.
  A moved actor goes back home once its site is up and reaches the pool's
  ``checkpoint_site`` (``return_home``): the worker away lets it go, then it
  is placed at home. An actor moving to a site joins a running worker there
  with room (``actors_per_worker``) before a new worker is started.

Run one with a provider (here the ``process`` one of the workflow layer),
or as a tree's child with :func:`~diaspora.workflow.pool_child`::

    spec = PoolSpec("recon", {"edge": SiteQuota(1, 2), "hpc": SiteQuota(2, 8)})
    controller = PoolController(spec, ProcessProvider({"edge": edge, "hpc": hpc}))
    async with anyio.create_task_group() as tg:
        await tg.start(controller.run)
        await controller.ready.wait()      # every up site at its minimum
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus

from diaspora.compute._pools import PoolActor, PoolSpec
from diaspora.compute._poolscale import PoolScale, scale_subject
from diaspora.compute._poolstatus import StatusRecord
from diaspora.compute._provider import Provider, WorkerOrder, WorkerState
from diaspora.errors import ControlError, DiasporaError
from diaspora.events import (
    Deficit,
    Event,
    EventSink,
    Healed,
    LogSink,
    Moved,
    Placed,
    Retired,
    Scaled,
    SiteDegraded,
)
from diaspora.fabric._control import Answerer
from diaspora.log import get_logger
from diaspora.supervision._context import child_events

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["PoolController"]

_HEALTH_TIMEOUT = 2.0
#: Seconds a worker of an unreachable site gets to stop before it is killed: without its
#: server it seldom finishes a graceful stop, and its actors wait for it to be gone.
_CUT_OFF_GRACE = 0.5


@dataclass(slots=True)
class _Worker:
    site: str
    actors: list[str]
    stopping: bool = False
    guests: set[str] = field(default_factory=set)  # actors it took after its start


@dataclass(slots=True)
class _Degraded:
    reason: str
    until: float | None  # None: until the pool restarts (or, when unreachable, answers)


@dataclass(slots=True)
class _Site:
    exits: deque[float] = field(default_factory=deque)
    degraded: _Degraded | None = None
    deficit_since: float | None = None
    filled: bool = False  # reached its minimum once: later shortfalls are deficits


class PoolController:
    """Runs a pool's workers through ``provider`` (see the module's documentation).

    ``events`` defaults to the supervisor's sink (else logs only);
    ``clock`` to :func:`time.monotonic`. ``ready`` is set once every site
    that is up has reached its minimum.
    """

    def __init__(
        self,
        spec: PoolSpec,
        provider: Provider,
        *,
        events: EventSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        fabric: Fabric | None = None,
    ) -> None:
        self.spec = spec
        self.provider = provider
        self.events: EventSink = events if events is not None else child_events(LogSink())
        self.clock = clock
        self.ready = anyio.Event()
        self._stop = anyio.Event()
        self._actors = {a.id: a for a in spec.actors}
        #: each actor's current site, and its worker (None: waiting for one)
        self.site_of: dict[str, str] = {a.id: spec.home(a) for a in spec.actors}
        self.worker_of: dict[str, str | None] = {a.id: None for a in spec.actors}
        self._workers: dict[str, _Worker] = {}
        self._sites = {name: _Site() for name in spec.sites}
        self._started = 0
        self.rounds = 0  #: reconcile rounds done (tests wait on it)
        self._pending: list[Event] = []  # events decided while collecting, emitted after
        self._homing: set[str] = set()  # moved actors handing off to go back home
        #: what every worker may be asked to take later: the pool's movable actors
        self._guests = tuple(spec.hosted(a) for a in spec.actors if a.movable)
        self._log = get_logger(pool=spec.name)
        #: with a fabric: the pool's state in its ``diaspora-pools`` bucket (``diaspora status``)
        self._record = StatusRecord(fabric, spec.name) if fabric is not None else None
        self._fabric = fabric
        #: runtime requests over the declared minimums (``scale_pool``; with a fabric)
        self.scale = PoolScale({s: (q.min, q.max) for s, q in spec.sites.items()})

    # -- Runnable ------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Enter the provider, then reconcile every ``check_interval`` until stopped."""
        async with self.provider, contextlib.AsyncExitStack() as stack:
            if self._fabric is not None:
                subject, answerer = scale_subject(self.spec.name), Answerer(self._on_scale)
                await stack.enter_async_context(
                    self._fabric.subscription(subject, answerer.handle, flush=True)
                )
            task_status.started()
            while not self._stop.is_set():
                await self.reconcile()
                with anyio.move_on_after(self.spec.check_interval):
                    await self._stop.wait()

    async def _on_scale(self, subject: str, request: Mapping[str, Any]) -> dict[str, Any]:
        try:
            answer, (site, by, extra) = self.scale.answer(request)
        except ControlError as exc:
            return {"ok": False, "error": f"pool {self.spec.name!r}: {exc}"}
        self._log.info("pool_scaled", site=site, by=by, extra=extra, want=answer["want"])
        await self._emit(
            Scaled(name=self.spec.name, site=site, by=by, extra=extra, want=answer["want"])
        )
        return answer

    # -- views ---------------------------------------------------------------------------

    def degraded(self, site: str) -> str | None:
        """Why ``site`` is degraded (``intensity`` or ``unreachable``), else ``None``."""
        state = self._sites[site].degraded
        return state.reason if state is not None else None

    def live(self, site: str) -> list[str]:
        """The workers at ``site`` the controller counts (starting or running)."""
        return [w for w, worker in self._workers.items() if worker.site == site]

    # -- one round -----------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Look at the workers and sites once and act on what differs from the spec."""
        now = self.clock()
        states = self._collect(now)
        up = await self._check_health(now)
        await self._homecoming()
        await self._rehome(up)
        await self._return_home(up)
        wants = self.scale.wants(self.spec.wants(up))
        for site, want in wants.items():
            await self._fill(site, want, states)
            if site in self.scale.touched:
                await self._retire(site, want)
        for site in self.spec.sites:
            await self._track(site, wants.get(site), states, now)
        if not self.ready.is_set() and all(self._sites[s].filled for s in wants):
            self.ready.set()
        if self._record is not None:
            try:
                await self._record.write(self.status(wants, states))
            except DiasporaError as exc:  # the pool keeps working without its record
                self._log.warning("pool_status_not_written", error=str(exc))
        self.rounds += 1

    def status(self, wants: dict[str, int], states: dict[str, WorkerState]) -> dict[str, Any]:
        """The pool's state now, as its ``diaspora-pools`` record holds it."""
        sites = {}
        for name, quota in self.spec.sites.items():
            live, state = self.live(name), self._sites[name]
            since = state.deficit_since
            sites[name] = {
                "min": quota.min,
                "max": quota.max,
                "want": wants.get(name, 0),
                "workers": live,
                "running": sum(1 for w in live if states.get(w) is WorkerState.RUNNING),
                "degraded": self.degraded(name),
                "deficit_s": None if since is None else round(self.clock() - since, 1),
            }
        actors = {
            a.id: {
                "site": self.site_of[a.id],
                "worker": self.worker_of[a.id],
                "home": self.spec.home(a),
            }
            for a in self.spec.actors
        }
        return {
            "pool": self.spec.name,
            "provider": self.spec.provider.value,
            "total_min": self.spec.total_min,
            "sites": sites,
            "actors": actors,
        }

    def _collect(self, now: float) -> dict[str, WorkerState]:
        """Forget exited workers (their actors wait for a new one); the others' states."""
        infos = {info.id: info for info in self.provider.workers()}
        states: dict[str, WorkerState] = {}
        for wid, worker in list(self._workers.items()):
            info = infos.get(wid)
            if info is not None and info.alive:
                states[wid] = info.state
                continue
            del self._workers[wid]
            self.provider.forget(wid)
            for actor in worker.actors:
                if self.worker_of.get(actor) == wid:
                    self.worker_of[actor] = None
            if not worker.stopping:
                error = info.error if info is not None else "vanished"
                self._log.warning("worker_exited", worker=wid, site=worker.site, error=error)
                self._note_exit(worker.site, now)
        return states

    def _note_exit(self, site: str, now: float) -> None:
        state = self._sites[site]
        state.exits.append(now)
        while state.exits and state.exits[0] < now - self.spec.period:
            state.exits.popleft()
        if state.degraded is None and len(state.exits) > self.spec.intensity:
            retry = self.spec.retry_after
            state.degraded = _Degraded("intensity", None if retry is None else now + retry)
            self._pending.append(
                SiteDegraded(
                    name=self.spec.name,
                    site=site,
                    reason="intensity",
                    restarts=len(state.exits),
                    period_s=self.spec.period,
                    retry_after_s=retry,
                )
            )

    async def _check_health(self, now: float) -> set[str]:
        """The sites that may take workers now; degrade or restore the others."""
        up: set[str] = set()
        for site, state in self._sites.items():
            healthy = False
            with anyio.move_on_after(_HEALTH_TIMEOUT):
                healthy = await self.provider.health(site)
            if not healthy:
                if state.degraded is None or state.degraded.reason != "unreachable":
                    state.degraded = _Degraded("unreachable", None)
                    await self._emit(
                        SiteDegraded(
                            name=self.spec.name,
                            site=site,
                            reason="unreachable",
                            restarts=len(state.exits),
                            period_s=self.spec.period,
                        )
                    )
                    for wid in self.live(site):  # cut off: their actors must not run twice
                        self._workers[wid].stopping = True
                        await self.provider.stop(wid, grace=_CUT_OFF_GRACE)
                continue
            if state.degraded is not None:
                until = state.degraded.until
                if state.degraded.reason == "unreachable" or (until is not None and now >= until):
                    self._log.info("site_restored", site=site, was=state.degraded.reason)
                    state.degraded = None
                    state.exits.clear()
            if state.degraded is None:
                up.add(site)
        for event in self._pending:
            await self._emit(event)
        self._pending.clear()
        return up

    def _can_move(self, up: set[str]) -> bool:
        """Whether movable actors may run away from home now: their checkpoint site is up."""
        anchor = self.spec.checkpoint_site
        return bool(up) and (anchor is None or anchor in up)

    async def _rehome(self, up: set[str]) -> None:
        """Movable actors waiting at a degraded site go to the up site with the most room."""
        for actor_id, site in self.site_of.items():
            if site in up or self.worker_of[actor_id] is not None:
                continue
            if not self._actors[actor_id].movable or not self._can_move(up):
                continue  # pinned (or its checkpoint unreachable): it waits for its site
            target = max(
                (s for s in self.spec.sites if s in up),
                key=lambda s: self.spec.sites[s].max - len(self.live(s)),
            )
            self.site_of[actor_id] = target
            await self._emit(
                Moved(name=self.spec.name, site=target, actor=actor_id, from_site=site)
            )

    async def _return_home(self, up: set[str]) -> None:
        """A moved actor whose home is up again, and reaches the checkpoint site, goes back:
        its worker away is stopped (its final checkpoint written), then it is placed at
        home, where it claims the record (one owner at a time: the fence's epoch)."""
        for actor_id, site in self.site_of.items():
            actor = self._actors[actor_id]
            home = self.spec.home(actor)
            if site == home or home not in up or not (actor.movable and actor.return_home):
                continue
            if actor_id in self._homing or not await self._reaches_checkpoints(home):
                continue
            wid = self.worker_of[actor_id]
            self._homing.add(actor_id)
            if wid is None or self._workers[wid].stopping:
                continue
            worker = self._workers[wid]
            self._log.info("returning_home", actor=actor_id, worker=wid, site=home)
            if actor_id in worker.guests and await self.provider.release(wid, actor_id):
                worker.guests.discard(actor_id)
                worker.actors.remove(actor_id)
                self.worker_of[actor_id] = None
                continue
            worker.stopping = True  # it came with the worker: the worker goes
            await self.provider.stop(wid)

    async def _homecoming(self) -> None:
        """Actors handing off whose worker away has exited now wait at their home site."""
        for actor_id in list(self._homing):
            if self.worker_of[actor_id] is None:
                self._homing.discard(actor_id)
                home = self.spec.home(self._actors[actor_id])
                away, self.site_of[actor_id] = self.site_of[actor_id], home
                await self._emit(
                    Moved(name=self.spec.name, site=home, actor=actor_id, from_site=away)
                )

    async def _reaches_checkpoints(self, site: str) -> bool:
        anchor = self.spec.checkpoint_site
        if anchor is None or anchor == site:
            return True
        with anyio.move_on_after(_HEALTH_TIMEOUT):
            return await self.provider.reaches(site, self.spec.domain(anchor))
        return False

    async def _fill(self, site: str, want: int, states: dict[str, WorkerState]) -> None:
        """Start the workers ``site`` lacks, giving them the actors waiting there."""
        live = self.live(site)
        waiting = [
            a
            for a, s in self.site_of.items()
            if s == site and self.worker_of[a] is None and a not in self._homing
        ]
        new = max(0, want - len(live))
        if waiting and new == 0:
            waiting = await self._join(site, waiting, states)
            if (
                waiting
                and len(live) < self.spec.sites[site].max
                and not self._soon(waiting, live, states)
            ):
                new = 1
        if new == 0:
            return
        state = self._sites[site]
        if state.filled and state.deficit_since is None and len(live) < want:
            running = sum(1 for w in live if states.get(w) is WorkerState.RUNNING)
            state.deficit_since = self.clock()
            await self._emit(Deficit(name=self.spec.name, site=site, have=running, want=want))
        shares: list[list[str]] = [[] for _ in range(new)]
        for i, actor in enumerate(waiting):
            shares[i % new].append(actor)
        for share in shares:
            self._started += 1
            wid = f"{self.spec.name}-{site}-{self._started}"
            actors: tuple[PoolActor, ...] = tuple(self.spec.hosted(self._actors[a]) for a in share)
            self._workers[wid] = _Worker(site, list(share))
            for actor in share:
                self.worker_of[actor] = wid
            order = WorkerOrder(self.spec.name, wid, site, actors, self._guests)
            await self.provider.start(order)
            for actor in share:
                await self._emit(Placed(name=self.spec.name, site=site, actor=actor, worker=wid))

    async def _retire(self, site: str, want: int) -> None:
        """Stop ``site``'s idle workers (no actors) beyond ``want``, newest first."""
        active = [w for w in self.live(site) if not self._workers[w].stopping]
        idle = [w for w in active if not self._workers[w].actors]
        idle.sort(key=lambda w: int(w.rsplit("-", 1)[-1]), reverse=True)
        for wid in idle[: max(0, len(active) - want)]:
            self._workers[wid].stopping = True
            await self.provider.stop(wid)
            await self._emit(Retired(name=self.spec.name, site=site, worker=wid))

    def _soon(self, waiting: list[str], live: list[str], states: dict[str, WorkerState]) -> bool:
        """Whether the movable ``waiting`` actors can join a worker still starting (with room)."""
        if not all(self._actors[a].movable for a in waiting):
            return False
        return any(
            states.get(w) is not WorkerState.RUNNING
            and not self._workers[w].stopping
            and len(self._workers[w].actors) < self.spec.actors_per_worker
            for w in live
        )

    async def _join(
        self, site: str, waiting: list[str], states: dict[str, WorkerState]
    ) -> list[str]:
        """Give waiting movable actors to running workers at ``site`` with room (the fewest
        actors first); the actors left waiting."""
        rest = []
        for actor in waiting:
            room = [
                w
                for w in self.live(site)
                if states.get(w) is WorkerState.RUNNING
                and not self._workers[w].stopping
                and len(self._workers[w].actors) < self.spec.actors_per_worker
            ]
            if not self._actors[actor].movable or not room:
                rest.append(actor)
                continue
            wid = min(room, key=lambda w: len(self._workers[w].actors))
            if not await self.provider.host(wid, actor):
                rest.append(actor)
                continue
            worker = self._workers[wid]
            worker.actors.append(actor)
            worker.guests.add(actor)
            self.worker_of[actor] = wid
            await self._emit(Placed(name=self.spec.name, site=site, actor=actor, worker=wid))
        return rest

    async def _track(
        self, site: str, want: int | None, states: dict[str, WorkerState], now: float
    ) -> None:
        """Note a site back at its minimum (``Healed`` when it had a deficit)."""
        state = self._sites[site]
        if want is None:
            return
        running = sum(1 for w in self.live(site) if states.get(w) is WorkerState.RUNNING)
        if running < want:
            return
        state.filled = True
        if state.deficit_since is not None:
            after = round(now - state.deficit_since, 3)
            state.deficit_since = None
            await self._emit(
                Healed(name=self.spec.name, site=site, have=running, want=want, after_s=after)
            )

    async def _emit(self, event: Event) -> None:
        with anyio.move_on_after(2):
            await self.events.emit(event)
