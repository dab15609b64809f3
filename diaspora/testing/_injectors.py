"""Fault injectors: one small API to crash, hang, freeze or kill actors, kill, restart or
pause the nats-server, and cut or degrade a link, each returning a record of what was done.

An :class:`Injector` is bound to what it may break: a fabric (to send fault
orders to actors, see :mod:`diaspora.testing._faults`), an
:class:`~diaspora.fabric.EmbeddedServer`, a :class:`~diaspora.testing.LinkProxy`
and a :class:`~diaspora.testing._pids.PidSource` naming the process of an actor
or node. Every fault is a :class:`FaultSpec`; :meth:`Injector.apply` carries
it out and returns an :class:`Injected` record (kind, target, time, pid) for
reports. Server and link faults may last a ``duration``, after which the
injector lifts them itself (in its own task group); :meth:`Injector.heal`
lifts everything at once.

>>> FaultSpec(FaultKind.KILL_SERVER, duration=1.5).describe()
'kill_server for 1.5s'
>>> FaultSpec(FaultKind.HANG, "root.sum").describe()
'hang root.sum past its deadline'
>>> FaultSpec(FaultKind.CRASH)
Traceback (most recent call last):
...
diaspora.errors.InjectionError: fault crash: needs a target (an actor id)
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any, Final, Self

import anyio
from anyio.abc import TaskGroup

from diaspora import codec
from diaspora.errors import InjectionError, NoResponders
from diaspora.fabric import EmbeddedServer, Fabric, ServerState
from diaspora.log import get_logger
from diaspora.testing._faults import fault_subject
from diaspora.testing._pids import PidSource, PidWatcher, is_descendant
from diaspora.testing._proxy import LinkProxy

__all__ = [
    "FaultKind",
    "FaultSpec",
    "FaultStep",
    "Injected",
    "InjectionError",
    "Injector",
]


class FaultKind(Enum):
    """Every fault an :class:`Injector` knows, grouped by what it breaks (:attr:`layer`)."""

    CRASH = "crash"
    HANG = "hang"
    FREEZE = "freeze"
    KILL_PROCESS = "kill_process"
    KILL_SERVER = "kill_server"
    RESTART_SERVER = "restart_server"
    PAUSE_SERVER = "pause_server"
    RESUME_SERVER = "resume_server"
    LATENCY = "latency"
    BANDWIDTH = "bandwidth"
    RESET_LINK = "reset_link"
    BLACKHOLE = "blackhole"
    CUT_LINK = "cut_link"
    HEAL_LINK = "heal_link"

    @property
    def layer(self) -> str:
        """``actor``, ``process``, ``server`` or ``link``."""
        return _LAYERS[self]

    @property
    def lasting(self) -> bool:
        """Whether the fault lasts until lifted (by its ``duration`` or a heal)."""
        return self in _LASTING


_LAYERS: Final = {
    FaultKind.CRASH: "actor",
    FaultKind.HANG: "actor",
    FaultKind.FREEZE: "process",
    FaultKind.KILL_PROCESS: "process",
    FaultKind.KILL_SERVER: "server",
    FaultKind.RESTART_SERVER: "server",
    FaultKind.PAUSE_SERVER: "server",
    FaultKind.RESUME_SERVER: "server",
    FaultKind.LATENCY: "link",
    FaultKind.BANDWIDTH: "link",
    FaultKind.RESET_LINK: "link",
    FaultKind.BLACKHOLE: "link",
    FaultKind.CUT_LINK: "link",
    FaultKind.HEAL_LINK: "link",
}
_LASTING: Final = frozenset(
    {
        FaultKind.KILL_SERVER,
        FaultKind.PAUSE_SERVER,
        FaultKind.LATENCY,
        FaultKind.BANDWIDTH,
        FaultKind.BLACKHOLE,
        FaultKind.CUT_LINK,
    }
)
_TARGETED: Final = frozenset(
    {FaultKind.CRASH, FaultKind.HANG, FaultKind.FREEZE, FaultKind.KILL_PROCESS}
)
#: What a lasting fault occupies: a newer fault of the same aspect replaces it.
_ASPECT: Final = {
    FaultKind.KILL_SERVER: "server_down",
    FaultKind.PAUSE_SERVER: "server_paused",
    FaultKind.LATENCY: "latency",
    FaultKind.BANDWIDTH: "bandwidth",
    FaultKind.BLACKHOLE: "blackhole",
    FaultKind.CUT_LINK: "cut",
}
_LINK_ASPECTS: Final = ("latency", "bandwidth", "blackhole", "cut")


def _resent(sent: int) -> str | None:
    return f"order sent {sent} times: may have been taken more than once" if sent > 1 else None


def _check_number(value: float | None, name: str, where: str, *, positive: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InjectionError(f"{where}: {name}={value!r} must be a finite number")
    if value < 0 or (positive and value == 0):
        raise InjectionError(f"{where}: {name}={value!r} must be {'>' if positive else '>='} 0")


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault to inject.

    ``target`` is the actor id (crash, hang) or the actor id / node path whose
    process is hit (freeze, kill_process). ``seconds`` is how long a hang or
    freeze blocks (a hang with ``None`` blocks past the actor's
    ``handle_deadline``) or the added latency. ``duration`` is how long a
    server or link fault lasts before the injector lifts it (``None``: until
    healed; a blackhole needs one). ``rate`` is a bandwidth cap in bytes/s,
    ``jitter`` extra random latency.
    """

    kind: FaultKind
    target: str | None = None
    seconds: float | None = None
    duration: float | None = None
    rate: float | None = None
    jitter: float = 0.0

    def __post_init__(self) -> None:
        kind = FaultKind(self.kind)
        object.__setattr__(self, "kind", kind)
        where = f"fault {kind.value}"
        if kind in _TARGETED and not self.target:
            what = "an actor id" if kind.layer == "actor" else "an actor id or node path"
            raise InjectionError(f"{where}: needs a target ({what})")
        if kind not in _TARGETED and self.target is not None:
            raise InjectionError(f"{where}: takes no target (got {self.target!r})")
        _check_number(self.seconds, "seconds", where)
        _check_number(self.duration, "duration", where)
        _check_number(self.rate, "rate", where, positive=True)
        _check_number(self.jitter, "jitter", where)
        if kind in (FaultKind.FREEZE, FaultKind.LATENCY) and self.seconds is None:
            raise InjectionError(f"{where}: needs seconds (how long)")
        if kind is FaultKind.BANDWIDTH and self.rate is None:
            raise InjectionError(f"{where}: needs rate (bytes per second)")
        if kind is FaultKind.BLACKHOLE and self.duration is None:
            raise InjectionError(f"{where}: needs a duration (use cut_link for an open-ended one)")
        if self.duration is not None and not kind.lasting:
            raise InjectionError(f"{where}: is instantaneous, it takes no duration")

    def describe(self) -> str:
        """One line, e.g. ``kill_process root.sum`` or ``latency 50ms for 2.0s``."""
        parts = [self.kind.value]
        if self.target is not None:
            parts.append(self.target)
        if self.kind is FaultKind.HANG:
            parts.append("past its deadline" if self.seconds is None else f"{self.seconds:g}s")
        elif self.kind is FaultKind.FREEZE:
            parts.append(f"{self.seconds:g}s")
        elif self.kind is FaultKind.LATENCY:
            assert self.seconds is not None
            parts.append(f"{self.seconds * 1000:g}ms")
            if self.jitter:
                parts.append(f"±{self.jitter * 1000:g}ms")
        elif self.kind is FaultKind.BANDWIDTH:
            parts.append(f"{self.rate:g}B/s")
        if self.duration is not None:
            parts.append(f"for {self.duration:g}s")
        return " ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        """The non-default fields, JSON-ready (``kind`` as its string)."""
        out: dict[str, Any] = {"kind": self.kind.value}
        for name in ("target", "seconds", "duration", "rate"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.jitter:
            out["jitter"] = self.jitter
        return out


@dataclass(frozen=True, slots=True)
class FaultStep:
    """One step of a fault schedule: wait ``delay`` seconds, then inject ``fault``."""

    delay: float
    fault: FaultSpec

    def __post_init__(self) -> None:
        _check_number(self.delay, "delay", "fault step")


@dataclass(frozen=True, slots=True)
class Injected:
    """The record of one injected fault: what, where, when (``time.time()``), which pid, and a
    note when something about it is uncertain (an order sent more than once)."""

    serial: int
    fault: FaultSpec
    at: float
    pid: int | None = None
    note: str | None = None

    @property
    def kind(self) -> FaultKind:
        return self.fault.kind

    @property
    def target(self) -> str:
        """The actor, process, ``server`` or ``link`` the fault hit."""
        if self.fault.target is not None:
            return self.fault.target
        return "server" if self.kind.layer == "server" else "link"

    def as_dict(self) -> dict[str, Any]:
        out = {**self.fault.as_dict(), "target": self.target, "at": self.at}
        if self.pid is not None:
            out["pid"] = self.pid
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(slots=True)
class _Active:
    record: Injected
    scope: anyio.CancelScope | None = None
    plan: dict[str, Any] = field(default_factory=dict)


class Injector:
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

    Use it as an async context manager: lasting faults are lifted by timers
    in its task group, and leaving it heals whatever is still broken.
    """

    def __init__(
        self,
        fabric: Fabric | None = None,
        *,
        server: EmbeddedServer | None = None,
        proxy: LinkProxy | None = None,
        pids: PidSource | None = None,
        order_timeout: float = 30.0,
        answer_timeout: float = 5.0,
        protect: Collection[int] = (),
    ) -> None:
        self.fabric = fabric
        self.server = server
        self.proxy = proxy
        self.pids = pids
        self.order_timeout = order_timeout
        self.answer_timeout = answer_timeout
        self.protect = frozenset(protect)
        #: Every fault injected, in order.
        self.records: list[Injected] = []
        self._lifted: dict[int, float] = {}
        self._active: dict[str, _Active] = {}
        self._killed: set[int] = set()
        self._server_lock = anyio.Lock()
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
            pid = self._require_server(fault).pid
            await self._server_fault(fault)
        else:
            pid = None
            self._link_fault(fault)
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

    # -- one method per fault (each builds a FaultSpec and applies it) ---------------------

    async def crash(self, actor: str) -> Injected:
        """The actor raises at its next message (its supervisor restarts it)."""
        return await self.apply(FaultSpec(FaultKind.CRASH, actor))

    async def hang(self, actor: str, seconds: float | None = None) -> Injected:
        """The actor's next ``handle`` blocks ``seconds`` (default: past its ``handle_deadline``,
        which makes it a crash; an actor without a deadline then hangs for good)."""
        return await self.apply(FaultSpec(FaultKind.HANG, actor, seconds=seconds))

    async def freeze(self, target: str, seconds: float) -> Injected:
        """The actor's whole process blocks ``seconds`` at its next message (a stuck C call)."""
        return await self.apply(FaultSpec(FaultKind.FREEZE, target, seconds=seconds))

    async def kill_process(self, target: str) -> Injected:
        """SIGKILL the process running ``target`` (an actor id or a process-node path)."""
        return await self.apply(FaultSpec(FaultKind.KILL_PROCESS, target))

    async def kill_server(self, *, duration: float | None = None) -> Injected:
        """SIGKILL the nats-server; start it again after ``duration`` seconds if given."""
        return await self.apply(FaultSpec(FaultKind.KILL_SERVER, duration=duration))

    async def restart_server(self) -> Injected:
        """Start a killed server again, or restart a running one gracefully (same port, store)."""
        return await self.apply(FaultSpec(FaultKind.RESTART_SERVER))

    async def pause_server(self, *, duration: float | None = None) -> Injected:
        """SIGSTOP the server (it holds its sockets, answers nothing); resume after ``duration``."""
        return await self.apply(FaultSpec(FaultKind.PAUSE_SERVER, duration=duration))

    async def resume_server(self) -> Injected:
        """SIGCONT a paused server."""
        return await self.apply(FaultSpec(FaultKind.RESUME_SERVER))

    async def latency(
        self, seconds: float, *, jitter: float = 0.0, duration: float | None = None
    ) -> Injected:
        """Delay the link by ``seconds`` (plus up to ``jitter``) each way."""
        return await self.apply(
            FaultSpec(FaultKind.LATENCY, seconds=seconds, jitter=jitter, duration=duration)
        )

    async def bandwidth(
        self, bytes_per_second: float, *, duration: float | None = None
    ) -> Injected:
        """Cap the link at ``bytes_per_second`` each way."""
        return await self.apply(
            FaultSpec(FaultKind.BANDWIDTH, rate=bytes_per_second, duration=duration)
        )

    async def reset_link(self) -> Injected:
        """Reset every connection on the link (TCP RST); clients reconnect at once."""
        return await self.apply(FaultSpec(FaultKind.RESET_LINK))

    async def blackhole(self, duration: float) -> Injected:
        """Hold every byte both ways for ``duration`` seconds (connections stay open)."""
        return await self.apply(FaultSpec(FaultKind.BLACKHOLE, duration=duration))

    async def cut_link(self, *, duration: float | None = None) -> Injected:
        """Refuse new connections and reset open ones, for ``duration`` or until healed."""
        return await self.apply(FaultSpec(FaultKind.CUT_LINK, duration=duration))

    async def heal_link(self) -> Injected:
        """End every link fault: no latency, no cap, no blackhole, connections accepted."""
        return await self.apply(FaultSpec(FaultKind.HEAL_LINK))

    async def heal(self) -> None:
        """Lift every lasting fault now: server started and resumed, link healed.

        Not recorded as a fault (it is the end of faults).
        """
        if self.proxy is not None:
            self.proxy.heal()
            for aspect in _LINK_ASPECTS:
                self._lift(aspect)
        server = self.server
        if server is not None:
            async with self._server_lock:
                if server.state is ServerState.PAUSED:
                    server.resume()
                if server.state in (ServerState.KILLED, ServerState.STOPPED):
                    await server.start()
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

    # -- the server ------------------------------------------------------------------------

    def _require_server(self, fault: FaultSpec) -> EmbeddedServer:
        if self.server is None:
            raise InjectionError(
                f"{fault.describe()}: this Injector has no server (pass server=EmbeddedServer)"
            )
        return self.server

    async def _server_fault(self, fault: FaultSpec) -> None:
        server = self._require_server(fault)
        kind = fault.kind
        async with self._server_lock:
            state = server.state
            if kind is FaultKind.KILL_SERVER:
                if state not in (ServerState.RUNNING, ServerState.PAUSED):
                    raise InjectionError(f"{fault.describe()}: the server is {state.value}")
                await server.kill()
                self._lift("server_paused")
            elif kind is FaultKind.RESTART_SERVER:
                if state in (ServerState.KILLED, ServerState.STOPPED, ServerState.NEW):
                    await server.start()
                else:
                    await server.restart()
                self._lift("server_down")
                self._lift("server_paused")
            elif kind is FaultKind.PAUSE_SERVER:
                if state is not ServerState.RUNNING:
                    raise InjectionError(f"{fault.describe()}: the server is {state.value}")
                server.pause()
            elif kind is FaultKind.RESUME_SERVER:
                if state is ServerState.PAUSED:
                    server.resume()
                self._lift("server_paused")

    async def _lift_server(self, aspect: str) -> None:
        server = self.server
        assert server is not None
        async with self._server_lock:
            if aspect == "server_down" and server.state in (
                ServerState.KILLED,
                ServerState.STOPPED,
            ):
                await server.start()
            elif aspect == "server_paused" and server.state is ServerState.PAUSED:
                server.resume()

    # -- the link --------------------------------------------------------------------------

    def _require_proxy(self, fault: FaultSpec) -> LinkProxy:
        if self.proxy is None:
            raise InjectionError(
                f"{fault.describe()}: this Injector has no link (pass proxy=LinkProxy)"
            )
        return self.proxy

    def _link_fault(self, fault: FaultSpec) -> None:
        proxy = self._require_proxy(fault)
        kind = fault.kind
        if kind is FaultKind.LATENCY:
            assert fault.seconds is not None
            proxy.set_latency(fault.seconds, fault.jitter)
        elif kind is FaultKind.BANDWIDTH:
            proxy.set_bandwidth(fault.rate)
        elif kind is FaultKind.RESET_LINK:
            proxy.reset()
        elif kind is FaultKind.BLACKHOLE:
            proxy.blackhole(fault.duration)
        elif kind is FaultKind.CUT_LINK:
            proxy.cut()
        elif kind is FaultKind.HEAL_LINK:
            proxy.heal()
            for aspect in _LINK_ASPECTS:
                self._lift(aspect)

    def _lift_link(self, aspect: str) -> None:
        """End one link aspect; the others in force stay (heal() clears all, so re-apply)."""
        proxy = self.proxy
        assert proxy is not None
        if aspect == "latency":
            proxy.set_latency(0.0)
        elif aspect == "bandwidth":
            proxy.set_bandwidth(None)
        elif aspect == "cut":
            proxy.heal()
            for other in ("latency", "bandwidth"):
                active = self._active.get(other)
                if active is not None:
                    fault = active.record.fault
                    if other == "latency":
                        assert fault.seconds is not None
                        proxy.set_latency(fault.seconds, fault.jitter)
                    else:
                        proxy.set_bandwidth(fault.rate)
            blackhole = self._active.get("blackhole")
            if blackhole is not None:
                ends = blackhole.record.at + (blackhole.record.fault.duration or 0.0)
                proxy.blackhole(max(0.0, ends - time.time()))
        # a blackhole ends by the proxy's own timer

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
                await self._lift_server(aspect)
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
