"""Warm standbys: an interpreter started ahead of time, ready to become a process node.

A process node restarted after ``kill -9`` needs a new interpreter that
imports the actor runtime and nats-py and connects, most of its restart
time. A :class:`StandbyPool` (one per fabric that watches process nodes, see
:func:`standby_pool`) keeps one such interpreter ready:
``python -m diaspora.workflow._host --standby URL...`` imports the runtime,
connects, writes ``{"t": "ready"}`` on its protocol pipe and waits on stdin
for a node's spec (the bytes a cold spawn gets). A node that starts takes
the standby if it said ``ready`` (it answers ``{"t": "took"}``; from then on
it is the node's process and speaks the node protocol), else spawns cold;
once the node reports ``started``, the pool spawns the next standby.

A standby dies with its parent (``PR_SET_PDEATHSIG``, and the end of its
stdin), with the fabric it was made for (:meth:`Fabric.on_close
<diaspora.fabric.Fabric.on_close>`), and when the last node watched from
that fabric stopped without a crash since the last start (nothing left to
restart). A standby found dead is replaced.

>>> StandbyPool().pid is None
True
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import subprocess
import sys
import weakref
from typing import TYPE_CHECKING, Any, Final

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from diaspora.log import get_logger

if TYPE_CHECKING:
    from diaspora.fabric import Auth, Fabric

__all__ = [
    "HOST_MODULE",
    "PARENT_PID_ENV",
    "STANDBY_FLAG",
    "Standby",
    "StandbyPool",
    "read_line",
    "spawn_host",
    "standby_pool",
]

HOST_MODULE: Final = "diaspora.workflow._host"
#: The child reads its parent's pid here, to notice a parent that died before it asked
#: Linux to kill it with its parent.
PARENT_PID_ENV: Final = "DIASPORA_NODE_PARENT_PID"
#: The host's argument that makes it a standby.
STANDBY_FLAG: Final = "--standby"
#: The fabric credentials a standby connects with (pickled, base64), set only for it.
STANDBY_AUTH_ENV: Final = "DIASPORA_STANDBY_AUTH"
MAX_LINE: Final = 1 << 20
#: How long a node waits for a standby's ``ready`` line before it spawns cold. A ready
#: standby's line is already buffered: this only bounds the wait for one still importing.
_READY_WAIT: Final = 0.005
#: How long a standby may take to answer ``took`` once it was sent a node's spec.
_TOOK_WAIT: Final = 5.0

_log = get_logger()


async def spawn_host(*args: str, auth: Auth | None = None) -> Process:
    """Spawn ``python -m diaspora.workflow._host`` as a node's (or a standby's) process.

    In a new session (a terminal's Ctrl-C reaches only the parent, which
    stops its children in order), with stdin and stdout pipes to this process.
    Shielded: a cancelled spawn would leave a process nobody owns.
    """
    with anyio.CancelScope(shield=True):
        proc = await anyio.open_process(
            [sys.executable, "-m", HOST_MODULE, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            start_new_session=True,
            env={**os.environ, PARENT_PID_ENV: str(os.getpid()), **_auth_env(auth)},
        )
    return proc


def _auth_env(auth: Auth | None) -> dict[str, str]:
    if auth is None:
        return {}
    return {STANDBY_AUTH_ENV: base64.b64encode(pickle.dumps(auth)).decode()}


def standby_auth() -> Auth | None:
    """In a standby: the credentials its parent's fabric connects with."""
    raw = os.environ.pop(STANDBY_AUTH_ENV, "")
    if not raw:
        return None
    auth: Auth = pickle.loads(base64.b64decode(raw))  # set by our own parent, as stdin is
    return auth


async def read_line(lines: BufferedByteReceiveStream) -> dict[str, Any] | None:
    """The next protocol line as a dict (``{}`` if garbled); ``None`` at the end of the pipe."""
    try:
        line = await lines.receive_until(b"\n", MAX_LINE)
    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        _log.warning("node_protocol_garbage", line=line[:200])
        return {}
    return message


class Standby:
    """A spawned standby interpreter, not yet given to a node."""

    def __init__(self, proc: Process) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.lines = BufferedByteReceiveStream(proc.stdout)
        self.ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def poll_ready(self, wait: float) -> bool:
        """Whether it said ``ready`` (waiting up to ``wait`` seconds) and is alive."""
        if not self.ready and self.alive:
            with anyio.move_on_after(wait):
                message = await read_line(self.lines)
                if message is None:
                    return False
                self.ready = message.get("t") == "ready"
        return self.ready and self.alive

    async def hand(self, stdin: bytes) -> bool:
        """Give it a node's stdin; whether it answered ``took`` (then it is the node's)."""
        assert self.proc.stdin is not None
        try:
            await self.proc.stdin.send(stdin)
            await self.proc.stdin.aclose()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return False
        with anyio.move_on_after(_TOOK_WAIT):
            message = await read_line(self.lines)
            return message is not None and message.get("t") == "took"
        return False

    async def discard(self) -> None:
        """Kill it (if it still runs) and reap it."""
        with anyio.CancelScope(shield=True):
            if self.alive:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
            await self.proc.wait()
            with contextlib.suppress(Exception):
                await self.proc.aclose()


class StandbyPool:
    """At most one warm standby, for the process nodes watched from one fabric.

    A node calls :meth:`enter` when it starts, :meth:`take` to get the
    standby instead of spawning, :meth:`replenish` once it started, and
    :meth:`leave` when its process ended.
    """

    def __init__(self) -> None:
        self._standby: Standby | None = None
        self._running = 0
        self._crashed = False  # a node crashed since the last start: a restart is coming
        self._spawning = False
        self._closed = False
        self.spawned = 0  #: standbys spawned so far
        self.taken = 0  #: standbys that became a node

    @property
    def pid(self) -> int | None:
        """The pid of the current standby, ready or not (``None``: there is none)."""
        standby = self._standby
        return standby.pid if standby is not None and standby.alive else None

    async def wait_ready(self, timeout: float) -> int:
        """Wait until the standby is ready; its pid. :class:`TimeoutError` after ``timeout``."""
        with anyio.fail_after(timeout):
            while True:
                standby = self._standby
                if standby is not None and await standby.poll_ready(0.05):
                    return standby.pid
                await anyio.sleep(0.01)

    def enter(self) -> None:
        self._running += 1
        self._crashed = False

    async def take(self, stdin: bytes) -> Standby | None:
        """The ready standby, already given ``stdin``; ``None``: spawn cold."""
        standby = self._standby
        if standby is None or self._closed:
            return None
        if not await standby.poll_ready(_READY_WAIT):
            if not standby.alive:
                _log.info("standby_died", pid=standby.pid, returncode=standby.proc.returncode)
                self._standby = None
                await standby.discard()
            return None  # still importing: kept for the next restart
        self._standby = None
        if await standby.hand(stdin):
            self.taken += 1
            return standby
        _log.warning("standby_refused", pid=standby.pid)
        await standby.discard()
        return None

    async def replenish(self, urls: list[str], auth: Auth | None = None) -> None:
        """Spawn a standby connecting to ``urls`` (with ``auth``), unless one is running or
        being spawned."""
        current = self._standby
        if current is not None:
            if current.alive:
                return
            _log.info("standby_died", pid=current.pid, returncode=current.proc.returncode)
            self._standby = None
            await current.discard()
        if self._closed or self._spawning:
            return
        self._spawning = True
        try:
            standby = Standby(await spawn_host(STANDBY_FLAG, *urls, auth=auth))
        finally:
            self._spawning = False
        self.spawned += 1
        if self._closed:
            await standby.discard()
            return
        self._standby = standby
        _log.debug("standby_spawned", pid=standby.pid)

    async def leave(self, *, crashed: bool) -> None:
        self._running -= 1
        self._crashed |= crashed
        if self._running <= 0 and not self._crashed:
            await self._discard()  # every node stopped on purpose: nothing to take over

    async def aclose(self) -> None:
        """Kill the standby; no more are spawned."""
        self._closed = True
        await self._discard()

    async def _discard(self) -> None:
        standby, self._standby = self._standby, None
        if standby is not None:
            await standby.discard()


_POOLS: weakref.WeakKeyDictionary[Fabric, StandbyPool] = weakref.WeakKeyDictionary()


def standby_pool(fabric: Fabric) -> StandbyPool:
    """The standby pool of the process nodes watched from ``fabric``; closed with it."""
    pool = _POOLS.get(fabric)
    if pool is None:
        pool = _POOLS[fabric] = StandbyPool()

        async def close() -> None:
            if _POOLS.get(fabric) is pool:
                del _POOLS[fabric]
            await pool.aclose()

        fabric.on_close(close)
    return pool
