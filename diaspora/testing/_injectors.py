"""Fault injectors: one small API to crash, hang, freeze or kill actors, kill, restart or
pause the nats-server, and cut or degrade a link, each returning a record of what was done.

An :class:`Injector` is bound to what it may break: a fabric (to send fault
orders to actors, see :mod:`diaspora.testing._faults`), an
:class:`~diaspora.fabric.EmbeddedServer`, a :class:`~diaspora.testing.LinkProxy`
(or the name of a site whose :class:`~diaspora.fabric.LinkControl` carries
out link faults) and a :class:`~diaspora.testing._pids.PidSource` naming the
process of an actor or node. Every fault is a
:class:`~diaspora.testing.FaultSpec` (the data model is in
:mod:`diaspora.testing._faultspec`); :meth:`Injector.apply` carries it out and
returns an :class:`~diaspora.testing.Injected` record (kind, target, time, pid) for
reports. Server and link faults may last a ``duration``, after which the
injector lifts them itself (in its own task group); :meth:`Injector.heal`
lifts everything at once. The server and link parts are in
:mod:`diaspora.testing._fault_targets`.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup

from diaspora import codec
from diaspora.errors import InjectionError, LinkFaultError, NoResponders
from diaspora.fabric import EmbeddedServer, Fabric, LinkProxy, ServerState, link_fault
from diaspora.log import get_logger
from diaspora.testing._fault_targets import ServerFaults, apply_link_fault, lift_link_aspect
from diaspora.testing._faults import fault_subject
from diaspora.testing._faultspec import (
    _ASPECT,
    _LINK_ASPECTS,
    FaultKind,
    FaultSpec,
    FaultStep,
    Injected,
)
from diaspora.testing._faultverbs import FaultVerbs
from diaspora.testing._pids import PidSource, PidWatcher, is_descendant

__all__ = ["Injector"]


def _resent(sent: int) -> str | None:
    return f"order sent {sent} times: may have been taken more than once" if sent > 1 else None


@dataclass(slots=True)
class _Active:
    record: Injected
    scope: anyio.CancelScope | None = None
    plan: dict[str, Any] = field(default_factory=dict)


class Injector(FaultVerbs):
    """Injects faults into what it is bound to, and keeps a record of each (:attr:`records`).

    ``fabric`` carries fault orders to actors (which must run the
    :class:`~diaspora.testing._faults.FaultInjection` stage, as a
    :class:`~diaspora.testing.Workflow`'s actors do) and
    should reach the server directly, not through ``proxy``. ``pids`` names
    the process of an actor or node (a :class:`~diaspora.testing.Workflow`;
    by default a :class:`~diaspora.testing._pids.PidWatcher` on ``fabric``,
    which learns pids from started events from then on); only descendants of
    this process are ever killed or frozen, never this process itself nor
    the pids in ``protect``. ``order_timeout`` bounds how long an actor
    fault waits for the actor to be reachable and a kill for a live pid;
    an order unanswered for ``answer_timeout`` is sent again.

    ``link_site`` names a site whose :class:`~diaspora.fabric.LinkControl` puts the
    link faults on its link (orders sent on ``fabric`` with
    :func:`~diaspora.fabric.link_fault`), for a link this process does not own;
    the control lifts a lasting fault itself when its duration is over.

    Use it as an async context manager: lasting faults are lifted by timers
    in its task group, and leaving it heals whatever is still broken.
    """

    def __init__(
        self,
        fabric: Fabric | None = None,
        *,
        server: EmbeddedServer | None = None,
        proxy: LinkProxy | None = None,
        link_site: str | None = None,
        pids: PidSource | None = None,
        order_timeout: float = 30.0,
        answer_timeout: float = 5.0,
        protect: Collection[int] = (),
    ) -> None:
        self.fabric = fabric
        self.server = server
        self.proxy = proxy
        self.link_site = link_site
        self.pids = pids
        self.order_timeout = order_timeout
        self.answer_timeout = answer_timeout
        self.protect = frozenset(protect)
        #: Every fault injected, in order.
        self.records: list[Injected] = []
        self._lifted: dict[int, float] = {}
        self._active: dict[str, _Active] = {}
        self._killed: set[int] = set()
        self._server_faults = ServerFaults()
        self._tg: TaskGroup | None = None
        self._watcher: PidWatcher | None = None
        self._log = get_logger()

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._tg is not None:
            raise RuntimeError("Injector is already entered")
        if self.pids is None and self.fabric is not None:
            watcher = PidWatcher(self.fabric)
            await watcher.__aenter__()
            self._watcher = self.pids = watcher
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        tg, self._tg = self._tg, None
        if tg is None:
            return
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(60):
                await self.heal()
        finally:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            watcher, self._watcher = self._watcher, None
            if watcher is not None:
                await watcher.__aexit__(None, None, None)
                self.pids = None

    # -- what the injector knows ---------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many faults of each kind were injected (kinds never injected are left out)."""
        return dict(Counter(r.kind.value for r in self.records))

    @property
    def server_up(self) -> bool:
        """The server (if any) is running, ready, and not paused."""
        if self.server is None:
            return True
        lasting = "server_down" in self._active or "server_paused" in self._active
        return self.server.state is ServerState.RUNNING and not lasting

    @property
    def link_open(self) -> bool:
        """No cut or blackhole on the link (latency and bandwidth caps still let bytes by)."""
        return "cut" not in self._active and "blackhole" not in self._active

    @property
    def reachable(self) -> bool:
        """Actors can be told about faults now: server up and link open."""
        return self.server_up and self.link_open

    def active(self) -> list[Injected]:
        """Lasting faults in force now, oldest first."""
        return sorted((a.record for a in self._active.values()), key=lambda r: r.serial)

    def lifted_at(self, record: Injected) -> float | None:
        """When ``record``'s fault stopped (``time.time()``); its own time for instantaneous
        faults, ``None`` while it lasts."""
        if not record.kind.lasting:
            return record.at
        return self._lifted.get(record.serial)

    # -- the uniform entry point -----------------------------------------------------------

    async def apply(self, fault: FaultSpec) -> Injected:
        """Inject ``fault`` now; return its record (also appended to :attr:`records`)."""
        kind = fault.kind
        if fault.duration is not None and self._tg is None:
            raise InjectionError(
                f"{fault.describe()}: a fault with a duration needs a running Injector "
                "(async with Injector(...) as injector), which lifts it when time is up"
            )
        note = None
        if kind.layer == "actor":
            pid = None
            note = _resent(await self._order(fault))
        elif kind is FaultKind.FREEZE:
            pid = await self._pid_of(fault, "freeze")
            note = _resent(await self._order(fault))
        elif kind is FaultKind.KILL_PROCESS:
            pid = await self._pid_of(fault, "kill")
            os.kill(pid, signal.SIGKILL)
            self._killed.add(pid)
        elif kind.layer == "server":
            server = self._require_server(fault)
            pid = server.pid
            await self._server_faults.apply(server, fault, self._lift)
        else:
            pid = None
            if self.proxy is None and self.link_site is not None:
                await self._order_link(fault)
            else:
                apply_link_fault(self._require_proxy(fault), fault)
            if kind is FaultKind.HEAL_LINK:
                for aspect in _LINK_ASPECTS:
                    self._lift(aspect)
        record = Injected(len(self.records), fault, time.time(), pid, note)
        self.records.append(record)
        if kind.lasting:
            self._begin(record)
        self._log.info(
            "fault_injected",
            kind=kind.value,
            target=record.target,
            pid=pid,
            fault=fault.describe(),
            **({"note": note} if note else {}),
        )
        return record

    async def run(self, schedule: Iterable[FaultStep]) -> list[Injected]:
        """Carry out a schedule: for each step, sleep its delay, then inject its fault."""
        done = []
        for step in schedule:
            await anyio.sleep(step.delay)
            done.append(await self.apply(step.fault))
        return done

    async def heal(self) -> None:
        """Lift every lasting fault now: server started and resumed, link healed.

        Not recorded as a fault (it is the end of faults).
        """
        if self.proxy is not None:
            self.proxy.heal()
        elif self.link_site is not None and any(a in self._active for a in _LINK_ASPECTS):
            await self._order_link(FaultSpec(FaultKind.HEAL_LINK))
        for aspect in _LINK_ASPECTS:
            self._lift(aspect)
        server = self.server
        if server is not None:
            await self._server_faults.heal(server)
            self._lift("server_paused")
            self._lift("server_down")

    # -- actors ----------------------------------------------------------------------------

    async def _order(self, fault: FaultSpec) -> int:
        """Send a fault order to the actor and wait for its ok; return how many were sent.

        Sent again while nobody listens (the actor is restarting, the link is
        cut), and after ``answer_timeout`` without an answer (an order that
        reached an instance about to die is never answered); an order
        answered late may then be taken twice, which the record notes.
        """
        if self.fabric is None:
            raise InjectionError(
                f"{fault.describe()}: this Injector has no fabric to send the fault order on"
            )
        actor = fault.target
        assert actor is not None
        order: dict[str, Any] = {"fault": fault.kind.value, "seconds": fault.seconds}
        payload = codec.encode(order)
        subject = fault_subject(actor)
        deadline = time.monotonic() + self.order_timeout
        delay = 0.02
        unanswered = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise InjectionError(
                    f"{fault.describe()}: actor {actor!r} did not take the order on {subject!r} "
                    f"within {self.order_timeout}s ({unanswered} unanswered): is it running, "
                    "reachable (server up, link not cut), and does it run the "
                    "FaultInjection stage (Workflow(faults=True), or stages=[FaultInjection])?"
                )
            try:
                reply = await self.fabric.request(
                    subject, payload, timeout=min(left, self.answer_timeout)
                )
            except NoResponders:
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.25)
                continue
            except TimeoutError:
                unanswered += 1
                self._log.info("fault_order_unanswered", fault=fault.describe(), times=unanswered)
                continue
            if reply.data != b"ok":
                raise InjectionError(
                    f"{fault.describe()}: actor {actor!r} refused the order: "
                    f"{reply.data.decode(errors='replace')}"
                )
            return unanswered + 1

    async def _pid_of(self, fault: FaultSpec, verb: str) -> int:
        target = fault.target
        assert target is not None
        if self.pids is None:
            raise InjectionError(
                f"{fault.describe()}: this Injector has no pid source (pass pids=a Workflow "
                "or a PidWatcher) to find the process of the target"
            )
        try:
            pid = await self.pids.wait_pid(target, timeout=self.order_timeout, exclude=self._killed)
        except TimeoutError as exc:
            raise InjectionError(f"{fault.describe()}: {exc}") from exc
        if pid == os.getpid() or pid in self.protect:
            raise InjectionError(
                f"{fault.describe()}: {target!r} runs in pid {pid}, which this test must not "
                f"{verb} (its own process, or protected): run it in a process node "
                "(process = true), or crash it instead"
            )
        if not is_descendant(pid):
            raise InjectionError(
                f"{fault.describe()}: pid {pid} of {target!r} is not a process this test "
                f"started; refusing to {verb} it"
            )
        return pid

    # -- the server and the link (carried out by _fault_targets) ---------------------------

    def _require_server(self, fault: FaultSpec) -> EmbeddedServer:
        if self.server is None:
            raise InjectionError(
                f"{fault.describe()}: this Injector has no server (pass server=EmbeddedServer)"
            )
        return self.server

    def _require_proxy(self, fault: FaultSpec) -> LinkProxy:
        if self.proxy is None:
            raise InjectionError(
                f"{fault.describe()}: this Injector has no link (pass proxy=LinkProxy, or "
                "link_site=<site> for a site's LinkControl)"
            )
        return self.proxy

    async def _order_link(self, fault: FaultSpec) -> None:
        """Have the LinkControl of :attr:`link_site` carry out a link ``fault``."""
        site = self.link_site
        assert site is not None
        if self.fabric is None:
            raise InjectionError(
                f"{fault.describe()}: this Injector has no fabric to order site {site!r}'s "
                "link control on"
            )
        latency = fault.kind is FaultKind.LATENCY
        try:
            await link_fault(
                self.fabric,
                site,
                fault.kind.value,
                seconds=fault.seconds if latency else None,
                jitter=fault.jitter if latency and fault.jitter else None,
                rate=fault.rate,
                duration=fault.duration,
                timeout=self.answer_timeout,
            )
        except LinkFaultError as exc:
            raise InjectionError(f"{fault.describe()}: {exc}") from exc

    def _lift_link(self, aspect: str) -> None:
        proxy = self.proxy
        if proxy is None:  # a site's LinkControl: it lifts the fault when its duration ends
            return
        lift_link_aspect(proxy, aspect, self._in_force)

    def _in_force(self, aspect: str) -> Injected | None:
        active = self._active.get(aspect)
        return active.record if active is not None else None

    # -- lasting faults ----------------------------------------------------------------------

    def _begin(self, record: Injected) -> None:
        aspect = _ASPECT[record.kind]
        self._lift(aspect, undo=False)  # replaced by the newer fault of the same aspect
        active = _Active(record)
        self._active[aspect] = active
        duration = record.fault.duration
        if duration is not None and self._tg is not None:
            active.scope = anyio.CancelScope()
            self._tg.start_soon(self._lift_after, aspect, active, duration)

    async def _lift_after(self, aspect: str, active: _Active, delay: float) -> None:
        assert active.scope is not None
        with active.scope:
            await anyio.sleep(delay)
            if self._active.get(aspect) is not active:
                return
            if aspect in _LINK_ASPECTS:
                self._lift_link(aspect)
            else:
                assert self.server is not None
                await self._server_faults.lift(self.server, aspect)
            self._lift(aspect, undo=False)
            self._log.info("fault_lifted", fault=active.record.fault.describe())

    def _lift(self, aspect: str, *, undo: bool = False) -> None:
        """Mark the fault of ``aspect`` as over (``undo``: also reverse it on the link)."""
        active = self._active.pop(aspect, None)
        if active is None:
            return
        if active.scope is not None:
            active.scope.cancel()
        if undo and aspect in _LINK_ASPECTS:
            self._lift_link(aspect)
        self._lifted.setdefault(active.record.serial, time.time())
