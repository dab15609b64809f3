"""Process nodes: a subtree, or one actor, in its own OS process, watched by its parent.

A :class:`ProcessNode` is a :class:`~diaspora.supervision.Runnable`: its
supervisor starts, restarts and stops it like any child, and ``kill -9`` of
its process is just an abnormal exit (:class:`~diaspora.errors.NodeCrashed`)
after which the subtree is started again and its actors resume from their
checkpoints. Build one with :func:`process_child` (or ``actor_child(...,
process=True)``, or ``process = true`` in a config file).

How it works:

- **spawn**: ``python -m diaspora.workflow._host`` in a new session (so a
  terminal's Ctrl-C reaches only the parent, which stops children in order),
  or, with ``standby=True`` (the default), the parent's warm standby
  interpreter when it is ready (:mod:`diaspora.workflow._standby`: already
  imported and connected). Its stdin gets one JSON line (the parent's
  ``sys.path``) and the pickled subtree. The child asks Linux to SIGKILL it when the parent dies
  (``PR_SET_PDEATHSIG``, which fires when the spawning *thread* exits: run
  the supervisor on the main thread's event loop), connects to the parent fabric's URLs and
  runs the subtree (with the extra runtime stages its actors were given,
  such as fault injection): a :class:`~diaspora.supervision.SupervisorSpec` as a
  supervisor named after the node's path, or a start function (an actor) with
  the node's own :class:`~diaspora.supervision.ChildContext`, so actor ids are
  the same as in-process (``root.sum``).
- **protocol**: the child's stdout is a private pipe (``print`` goes to
  stderr) carrying one JSON object per line: ``hb`` every
  ``heartbeat_timeout / 4`` seconds from its event loop, ``started`` once the
  subtree called ``task_status.started()``, ``error`` before a non-zero exit,
  ``bye`` once its subtree is done (the heartbeats end; it is exiting).
- **started**: ``task_status.started()`` is called when ``started`` arrives;
  no ``started`` within ``start_timeout`` is a hang.
- **watchdog**: no line for ``heartbeat_timeout`` seconds (a handler blocking
  the event loop, which ``handle_deadline`` cannot interrupt) → SIGKILL and
  :class:`NodeHung`. After ``bye`` only ``start_timeout`` bounds the exit
  (the last steps, closing its connection and the interpreter, are silent).
- **exit**: status 0 is a normal exit (``shutdown`` after ``request_stop``);
  a non-zero status or a signal is :class:`~diaspora.errors.NodeCrashed`.
- **stop**: ``request_stop()`` sends SIGTERM; the child's tree stops in
  reverse start order and the process exits 0. When the supervisor's shutdown
  timeout cancels ``run``, the process is SIGKILLed.
- **events** through the supervisor's own sink (the node's
  ``ChildContext.events``; the fabric when the supervisor has none), so they
  sit next to the supervisor's: :class:`~diaspora.events.NodeStarted`
  (``child``, ``pid``, ``incarnation``, ``standby``: a standby took over),
  :class:`~diaspora.events.NodeHung` (``silent_s``) and
  :class:`~diaspora.events.NodeExited` (``returncode``, ``reason``: ``normal``,
  ``shutdown``, ``crashed``, ``hung`` or ``killed``;
  ``error``: what the subtree raised), published under
  ``diaspora.events.supervision.<supervisor>.node_started`` and so on.

>>> from diaspora.supervision import SupervisorSpec
>>> spec = process_child("ingest", SupervisorSpec([]), heartbeat_timeout=2.0)
>>> spec.effective_type.value, spec.start.heartbeat_timeout
('supervisor', 2.0)
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import pickle
import signal
import sys
import time
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import Process, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from diaspora.errors import ConfigError, FabricUnavailable, NodeCrashed, NodeHung
from diaspora.events import NodeExited, NodeStarted
from diaspora.events import NodeHung as NodeHungEvent
from diaspora.fabric._auth import Auth
from diaspora.log import get_logger
from diaspora.supervision._binding import StageBound, add_stages, bind_start
from diaspora.supervision._context import ChildContext, current_child
from diaspora.supervision._spec import (
    ChildSpec,
    ChildType,
    Restart,
    Shutdown,
    StartFn,
    SupervisorSpec,
)
from diaspora.workflow._standby import (
    HOST_MODULE,
    PARENT_PID_ENV,
    StandbyPool,
    read_line,
    spawn_host,
    standby_pool,
)

if TYPE_CHECKING:
    from diaspora.events import EventSink
    from diaspora.fabric import Fabric

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_START_TIMEOUT",
    "HOST_MODULE",
    "PARENT_PID_ENV",
    "NodeHung",
    "ProcessNode",
    "ProcessStart",
    "process_child",
]

#: Seconds without a heartbeat after which a node's process is killed as hung.
DEFAULT_HEARTBEAT_TIMEOUT: Final = 5.0
#: Seconds a node's process may take to import, connect and start its subtree.
DEFAULT_START_TIMEOUT: Final = 60.0
_GRACE: Final = 0.1


def _check_timeouts(heartbeat_timeout: object, start_timeout: object, where: str) -> None:
    for name, value in (("heartbeat_timeout", heartbeat_timeout), ("start_timeout", start_timeout)):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{where}: {name}={value!r} must be > 0 seconds")


class _NoMainPickler(pickle.Pickler):
    """Refuses what a child process could not import back (``__main__`` and local objects)."""

    def persistent_id(self, obj: Any) -> None:
        if isinstance(obj, type | types.FunctionType) and obj.__module__ == "__main__":
            raise pickle.PicklingError(
                f"{obj.__qualname__} is defined in __main__, which a child process cannot import"
            )
        return None


def _pickle_tree(target: object, where: str) -> bytes:
    buffer = io.BytesIO()
    try:
        _NoMainPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(target)
    except Exception as exc:
        raise ConfigError(
            f"{where}: its subtree cannot be sent to a child process ({exc}): define its "
            "actors, Runnables and start functions at module level of an importable module "
            "(no lambdas, local functions or __main__)"
        ) from exc
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class NodePayload:
    """What a node's process receives on stdin after the header line (pickled)."""

    context: ChildContext
    target: StartFn | SupervisorSpec
    urls: tuple[str, ...]
    heartbeat_interval: float
    auth: Auth | None = None  # the parent fabric's credentials (secrets in env vars stay there)


@dataclass(frozen=True, slots=True)
class ProcessStart:
    """The start function of a process node child: ``ProcessStart(...)()`` makes a ProcessNode.

    ``target`` is kept unbound from any fabric (the child binds it to its own
    connection) and must pickle by reference (module-level classes and
    functions).
    """

    target: StartFn | SupervisorSpec
    fabric: Fabric | None = None
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    start_timeout: float = DEFAULT_START_TIMEOUT
    standby: bool = True

    def __post_init__(self) -> None:
        _check_timeouts(self.heartbeat_timeout, self.start_timeout, "process node")
        if not isinstance(self.target, SupervisorSpec) and not callable(self.target):
            raise ConfigError(
                f"process node: target={self.target!r} is neither a SupervisorSpec nor a start "
                "function returning a Runnable"
            )
        object.__setattr__(self, "target", bind_start(self.target, None))
        _pickle_tree(self.target, "process node")

    def with_fabric(self, fabric: Fabric | None) -> ProcessStart:
        """The same start function, its node watched from ``fabric``."""
        return dataclasses.replace(self, fabric=fabric)

    def with_stages(self, stages: tuple[Any, ...]) -> ProcessStart:
        """The same node, the actors inside it running ``stages`` too."""
        target = self.target
        if isinstance(target, SupervisorSpec):
            target = add_stages(target, stages)
        elif isinstance(target, StageBound):
            target = target.with_stages(stages)
        return dataclasses.replace(self, target=target)

    def __call__(self, *args: Any) -> ProcessNode:
        context = current_child()
        if self.fabric is None:
            raise ConfigError(
                f"process node {context.path!r} has no fabric: pass fabric= to process_child(), "
                "or bind_fabric(spec, fabric) before running the tree"
            )
        if args != context.args:  # start_child(*args) outside a supervisor's bookkeeping
            context = dataclasses.replace(context, args=args)
        return ProcessNode(
            self.target,
            self.fabric,
            context=context,
            heartbeat_timeout=self.heartbeat_timeout,
            start_timeout=self.start_timeout,
            standby=self.standby,
        )


def process_child(
    id: str,
    tree: SupervisorSpec | StartFn,
    fabric: Fabric | None = None,
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown | None = None,
    type: ChildType | None = None,
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    standby: bool = True,
) -> ChildSpec:
    """The child spec of a process node running ``tree`` in its own OS process.

    ``tree`` is a :class:`SupervisorSpec` (run as supervisor ``<path>`` in the
    child; the type defaults to ``supervisor``, so ``shutdown`` to
    ``infinity`` — the watchdog still kills a hung process) or a start
    function such as :class:`~diaspora.supervision.ActorStart` (the type
    defaults to ``worker``). ``fabric`` may be bound later with
    :func:`~diaspora.supervision.bind_fabric`. ``standby=False`` always spawns a
    new interpreter instead of taking over the parent's warm standby.
    """
    try:
        start = ProcessStart(tree, fabric, heartbeat_timeout, start_timeout, standby)
    except ConfigError as exc:
        raise ConfigError(f"child {id!r}: {exc}") from exc.__cause__
    if type is None:
        type = ChildType.SUPERVISOR if isinstance(tree, SupervisorSpec) else ChildType.WORKER
    return ChildSpec(id, start, restart=restart, shutdown=shutdown, type=type)


class ProcessNode:
    """Runs ``target`` in a child OS process until it exits, is stopped, or hangs.

    ``pid`` is the current process's id once spawned, ``returncode`` its
    exit status once it ended (negative: killed by that signal). ``context``
    defaults to :func:`~diaspora.supervision.current_child`; ``events``, where
    the node reports its process, to the context's sink (its supervisor's),
    else ``fabric``. ``standby``: take over the warm standby of ``fabric``'s
    process nodes when it is ready (then ``warm`` is true), and keep one ready.
    """

    def __init__(
        self,
        target: SupervisorSpec | StartFn,
        fabric: Fabric,
        *,
        context: ChildContext | None = None,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        events: EventSink | None = None,
        standby: bool = True,
    ) -> None:
        self.context = context if context is not None else current_child()
        self.name = self.context.path
        if events is None:
            events = self.context.events if self.context.events is not None else fabric
        self.events: EventSink = events
        _check_timeouts(heartbeat_timeout, start_timeout, f"process node {self.name!r}")
        self.target = bind_start(target, None)
        self.fabric = fabric
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.start_timeout = float(start_timeout)
        self.pid: int | None = None
        self.returncode: int | None = None
        self.standby = standby
        self.warm = False
        self._pool: StandbyPool | None = None
        self._proc: Process | None = None
        self._stop_requested = False
        self._remote_error: str | None = None
        self._log = get_logger(node=self.name)

    def __repr__(self) -> str:
        return f"<ProcessNode {self.name!r} pid={self.pid} returncode={self.returncode}>"

    # -- Runnable ----------------------------------------------------------------------

    def request_stop(self) -> None:
        """SIGTERM the process: its subtree stops gracefully, in reverse start order."""
        self._stop_requested = True
        self._signal(signal.SIGTERM)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Spawn the process, report ``started`` when it does, watch it until it exits.

        Raises :class:`~diaspora.errors.NodeCrashed` on a non-zero exit status
        or a signal, :class:`NodeHung` when the watchdog killed it.
        """
        if self._proc is not None:
            raise RuntimeError(f"process node {self.name!r} has already run: make a new one")
        urls = self.fabric.urls
        if not urls:
            raise FabricUnavailable(
                f"process node {self.name!r}: fabric {self.fabric.name!r} has no server URL "
                "to give the child process: connect it first (async with Fabric(...))"
            )
        stdin = self._stdin(urls)
        pool = self._pool = standby_pool(self.fabric) if self.standby else None
        reason = "killed"
        if pool is not None:
            pool.enter()
        try:
            reason = await self._run_process(pool, stdin, task_status)
        except NodeHung:
            reason = "hung"
            raise
        finally:
            if pool is not None:
                with anyio.CancelScope(shield=True):
                    await pool.leave(crashed=reason in ("crashed", "hung"))
        code, pid = self.returncode, self.pid
        assert code is not None
        assert pid is not None
        if reason in ("normal", "shutdown"):
            return
        crashed = NodeCrashed(self.name, pid, code)
        if self._remote_error:
            crashed.add_note(f"the node's subtree raised: {self._remote_error}")
        raise crashed

    async def _run_process(
        self, pool: StandbyPool | None, stdin: bytes, task_status: TaskStatus[None]
    ) -> str:
        """Start the process (the standby's, else a new one), watch it; the exit's reason."""
        standby = await pool.take(stdin) if pool is not None else None
        if standby is not None:
            proc, lines, self.warm = standby.proc, standby.lines, True
        else:
            proc = await spawn_host()
            assert proc.stdout is not None
            lines = BufferedByteReceiveStream(proc.stdout)
        spawned = time.monotonic()
        self._proc = proc
        self.pid = proc.pid
        self._log.debug("node_spawned", pid=proc.pid, standby=self.warm)
        outcome: str | None = "killed"
        try:
            if self._stop_requested:
                self._signal(signal.SIGTERM)
            if standby is None:
                with anyio.move_on_after(self.start_timeout):  # else _watch reports it as hung
                    await self._send(proc, stdin)
            await self._watch(proc, lines, task_status, spawned)
            # the child closed its end of the pipe: it is exiting
            with anyio.move_on_after(self.heartbeat_timeout):
                await proc.wait()
            outcome = None
        except NodeHung:
            outcome = "hung"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                returncode = proc.returncode
                assert returncode is not None
                self.returncode = returncode
                with contextlib.suppress(Exception):
                    await proc.aclose()
                reason = outcome or self._classify(returncode)
                with anyio.move_on_after(2):
                    await self.events.emit(
                        NodeExited(
                            **self._about(),
                            pid=proc.pid,
                            returncode=returncode,
                            reason=reason,
                            error=self._remote_error,
                        )
                    )
        return reason

    # -- internals ---------------------------------------------------------------------

    def _classify(self, returncode: int) -> str:
        if returncode == 0:
            return "shutdown" if self._stop_requested else "normal"
        if returncode == -signal.SIGTERM and self._stop_requested:
            return "shutdown"  # stopped before it installed its own handler
        return "crashed"

    def _stdin(self, urls: list[str]) -> bytes:
        header = json.dumps({"sys_path": sys.path}).encode() + b"\n"
        payload = NodePayload(
            context=dataclasses.replace(self.context, events=None),  # a sink stays here
            target=self.target,
            urls=tuple(urls),
            heartbeat_interval=max(0.02, self.heartbeat_timeout / 4),
            auth=self.fabric.auth,
        )
        return header + _pickle_tree(payload, f"process node {self.name!r}")

    def _signal(self, signum: signal.Signals) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    @staticmethod
    async def _send(proc: Process, data: bytes) -> None:
        assert proc.stdin is not None
        try:
            await proc.stdin.send(data)
            await proc.stdin.aclose()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the child died first; its exit status says why

    async def _watch(
        self,
        proc: Process,
        lines: BufferedByteReceiveStream,
        task_status: TaskStatus[None],
        spawned: float,
    ) -> None:
        """Read the child's lines until it closes the pipe; kill it if it goes silent."""
        last_heard = spawned
        heard = started = leaving = False
        replenish = self._pool
        while True:
            now = time.monotonic()
            limit = self.heartbeat_timeout if heard and not leaving else self.start_timeout
            if not started:
                limit = min(limit, spawned + self.start_timeout - now)
            message: dict[str, Any] | None = None
            for wait in (limit, _GRACE):
                # the grace read: this process's own loop may be what stalled; let the
                # lines the child already wrote arrive before calling it hung
                with anyio.move_on_after(max(0.0, wait)):
                    message = await read_line(lines)
                    if message is None:
                        return  # the end of the pipe: the child is exiting
                if message is not None:
                    break
            if message is None:
                silent = time.monotonic() - last_heard
                proc.kill()
                returncode = await proc.wait()
                await self.events.emit(
                    NodeHungEvent(**self._about(), pid=proc.pid, silent_s=round(silent, 3))
                )
                raise NodeHung(
                    self.name, proc.pid, returncode, silent_s=silent, starting=not started
                )
            heard = True
            last_heard = time.monotonic()
            kind = message.get("t")
            if started and replenish is not None and kind == "hb":
                # the next standby, once this node has been up for a heartbeat: an interpreter
                # importing next to it would slow its start (and its catching up)
                await replenish.replenish(self.fabric.urls, self.fabric.auth)
                replenish = None
            if kind == "started" and not started:
                started = True
                task_status.started()
                await self.events.emit(
                    NodeStarted(**self._about(), pid=proc.pid, standby=self.warm)
                )
            elif kind == "error":
                self._remote_error = str(message.get("error"))
            elif kind == "bye":
                leaving = True  # its subtree is done, it is exiting: no more heartbeats

    def _about(self) -> dict[str, Any]:
        """The fields every event of this node carries: its supervisor, id and incarnation."""
        context = self.context
        return {"name": context.supervisor, "child": context.id, "incarnation": context.incarnation}
