"""Which OS process runs which actor or process node, and whether a test may kill it.

A :class:`PidWatcher` listens to the fabric's events — an actor's
``diaspora.events.actor.<id>.started`` and a supervisor's
``diaspora.events.supervision.<sup>.node_started`` both carry a ``pid`` — and
remembers the newest pid of every actor id and node path. Injectors ask it
for the process to kill. The helpers below read ``/proc`` (Linux), so a test
only ever signals processes it started itself.

>>> import os
>>> is_running(os.getpid()), is_descendant(os.getpid())
(True, False)
>>> node_path({"kind": "node_started", "supervisor": "root", "child": "sum"})
'root.sum'
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

import anyio

from diaspora import codec
from diaspora.errors import DecodeError
from diaspora.fabric import Fabric, Inbound
from diaspora.fabric._naming import EVENTS_PREFIX
from diaspora.log import get_logger

__all__ = [
    "PidSource",
    "PidWatcher",
    "child_processes",
    "is_descendant",
    "is_running",
    "node_path",
]

_PROC: Final = Path("/proc")
#: Subjects of the events that carry the pid of a newly started actor or node.
_STARTED: Final = (
    f"{EVENTS_PREFIX}.actor.*.started",
    f"{EVENTS_PREFIX}.supervision.*.node_started",
    f"{EVENTS_PREFIX}.supervision.*.node_exited",
)


class PidSource(Protocol):
    """Anything that can name the live process of an actor id or a process-node path."""

    async def wait_pid(
        self, target: str, *, timeout: float = 30.0, exclude: Collection[int] = ()
    ) -> int: ...


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name, or ``None`` if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name is in parentheses and may itself contain spaces or ')'
    return raw[raw.rindex(")") + 2 :].split()


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, someone else's
    fields = _stat(pid)
    if fields is None:
        return not _PROC.is_dir()  # gone since kill(0), unless there is no /proc to read
    return fields[0] not in ("Z", "X")


def _parent(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields is not None else None


def is_descendant(pid: int, ancestor: int | None = None) -> bool:
    """Whether ``pid`` is a child, grandchild... of ``ancestor`` (default: this process).

    A process is not its own descendant.
    """
    ancestor = os.getpid() if ancestor is None else ancestor
    current = _parent(pid)
    for _ in range(128):  # a parent chain is short; this bounds a race with pid reuse
        if current is None or current <= 0:
            return False
        if current == ancestor:
            return True
        if current == 1:
            return False
        current = _parent(current)
    return False


def child_processes(parent: int | None = None, *, command: str | None = None) -> list[int]:
    """Live direct children of ``parent`` (default: this process), whose command line
    contains ``command`` if given."""
    parent = os.getpid() if parent is None else parent
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in _PROC.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            fields = _stat(pid)
            if fields is None or int(fields[1]) != parent or fields[0] in ("Z", "X"):
                continue
            if command is not None:
                try:
                    cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if command not in cmdline:
                    continue
            found.append(pid)
    return sorted(found)


def node_path(event: Mapping[str, Any]) -> str | None:
    """The actor id or node path an event's ``pid`` belongs to (``None``: no such event)."""
    kind = event.get("kind")
    if kind == "started" and event.get("category") == "actor":
        name = event.get("name")
        return str(name) if name else None
    if kind in ("node_started", "node_exited"):
        supervisor, child = event.get("supervisor"), event.get("child")
        if supervisor and child:
            return f"{supervisor}.{child}"
    return None


class PidWatcher:
    """Records the pid of every actor and process node that starts on ``fabric``'s server.

    Use it as an async context manager (it subscribes on enter); ``pids`` maps
    an actor id or node path to every pid seen for it, oldest first. Events
    are best effort: one published while its sender was disconnected never
    arrives, so a :class:`~diaspora.testing.Workflow` also looks pids up in
    its own supervision tree.
    """

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self.pids: dict[str, list[int]] = {}
        self._exited: set[int] = set()
        self._subs: contextlib.AsyncExitStack | None = None
        self._changed = anyio.Event()
        self._log = get_logger(watcher="pids")

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            for subject in _STARTED:
                await stack.enter_async_context(self.fabric.subscription(subject, self._on_event))
            self._subs = stack.pop_all()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        subs, self._subs = self._subs, None
        if subs is not None:
            await subs.aclose()

    async def _on_event(self, msg: Inbound) -> None:
        try:
            event = codec.decode(msg.data)
        except DecodeError:
            return
        if not isinstance(event, dict):
            return
        self.record(event)

    def record(self, event: Mapping[str, Any]) -> None:
        """Take note of one started/exited event (what the subscription does)."""
        path = node_path(event)
        pid = event.get("pid")
        if path is None or not isinstance(pid, int):
            return
        if event.get("kind") == "node_exited":
            self._exited.add(pid)
        else:
            seen = self.pids.setdefault(path, [])
            if pid not in seen:
                seen.append(pid)
                self._log.debug("pid_seen", target=path, pid=pid)
        self._changed.set()
        self._changed = anyio.Event()

    def latest(self, target: str, exclude: Collection[int] = ()) -> int | None:
        """The newest live pid of ``target`` not in ``exclude``, if any."""
        for pid in reversed(self.pids.get(target, ())):
            if pid in exclude or pid in self._exited:
                continue
            return pid if is_running(pid) else None
        return None

    async def wait_pid(
        self, target: str, *, timeout: float = 30.0, exclude: Collection[int] = ()
    ) -> int:
        """The newest live pid of ``target``, waiting up to ``timeout`` for one to start.

        Raises ``TimeoutError`` naming the target and the pids seen for it.
        """
        deadline = time.monotonic() + timeout
        while True:
            pid = self.latest(target, exclude)
            if pid is not None:
                return pid
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no live process of {target!r} within {timeout}s (pids seen: "
                    f"{self.pids.get(target, [])}); is it running, and in a process of its own?"
                )
            changed = self._changed
            # events are the trigger; the poll catches a pid that died meanwhile
            with anyio.move_on_after(min(left, 0.1)):
                await changed.wait()
