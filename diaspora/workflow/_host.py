"""The child side of a process node: ``python -m diaspora.workflow._host``.

Started by :class:`~diaspora.supervision.ProcessNode`, never by hand. It
reads its subtree from stdin (see :mod:`diaspora.workflow._node` for the
protocol), runs it on its own fabric connection and exits with
(:class:`~diaspora.exitcode.ExitCode`):

- ``OK`` (0) — the subtree returned (after SIGTERM/SIGINT: stopped gracefully),
  or a standby's stdin ended before a subtree came (its parent needs it no more);
- ``FAILED`` (1) — the subtree raised (the reason was sent as an ``error`` line);
- ``BAD_TREE`` (4) — the subtree could not be loaded (an import failed in this process);
- ``ORPHANED`` (5) — the parent died before this process could be tied to it.

With ``--standby URL...`` it is a warm standby (:mod:`diaspora.workflow._standby`):
it imports the actor runtime and connects to ``URL...`` first, says ``ready``,
and only then reads a subtree from stdin, answers ``took`` and runs it on that
connection.

It imports only what a node needs before its subtree arrives (the fabric and
the supervision kernel; a standby also the actor runtime): the subtree's own
imports come with it (``python -X importtime -m diaspora.workflow._host``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pickle
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import structlog
from anyio.abc import TaskStatus

from diaspora.errors import ChildShutdown
from diaspora.exitcode import ExitCode
from diaspora.fabric import Fabric
from diaspora.log import configure_logging, get_logger
from diaspora.supervision._binding import bind_start
from diaspora.supervision._context import _CURRENT
from diaspora.supervision._runnable import Runnable, run_until
from diaspora.supervision._spec import SupervisorSpec
from diaspora.supervision._supervisor import Supervisor
from diaspora.workflow._standby import PARENT_PID_ENV, STANDBY_FLAG, standby_auth

if TYPE_CHECKING:
    from diaspora.workflow._node import NodePayload

__all__ = ["main"]

_PR_SET_PDEATHSIG: Final = 1
_MAX_ERROR: Final = 4000


def _send(fd: int, message: dict[str, Any]) -> None:
    os.write(fd, json.dumps(message).encode() + b"\n")


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit if it already has."""
    expected = int(os.environ.get(PARENT_PID_ENV, "0") or 0)
    with contextlib.suppress(Exception):  # not Linux: the parent's pipe closing still ends us
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if expected and os.getppid() != expected:
        os._exit(ExitCode.ORPHANED)


class _Announce(TaskStatus[None]):
    """The subtree's ``task_status``: ``started()`` tells the parent."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._done = False

    def started(self, value: None = None) -> None:
        if self._done:
            raise RuntimeError("the node's subtree called task_status.started() twice")
        self._done = True
        _send(self._fd, {"t": "started", "pid": os.getpid()})


def _make(payload: NodePayload, fabric: Fabric) -> Runnable:
    target = bind_start(payload.target, fabric)
    context = payload.context
    if isinstance(target, SupervisorSpec):
        return Supervisor(target, name=context.path, on_event=fabric)
    made = target(*context.args)
    if not isinstance(made, Runnable):
        raise TypeError(
            f"process node {context.path!r}: start returned {made!r}, which is not a Runnable"
        )
    return made


async def _heartbeats(fd: int, interval: float) -> None:
    while True:
        _send(fd, {"t": "hb"})
        await anyio.sleep(interval)


async def _signals(stop: anyio.Event, early: list[int], *, task_status: TaskStatus[None]) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
        task_status.started()
        if early:
            stop.set()
        async for signum in received:
            get_logger().info("signal", signal=signal.Signals(signum).name)
            stop.set()


async def _run_subtree(
    payload: NodePayload, fd: int, stop: anyio.Event, fabric: Fabric | None
) -> None:
    _CURRENT.set(payload.context)  # for the whole process: this task and the ones it starts
    async with contextlib.AsyncExitStack() as stack:
        if fabric is None:
            fabric = Fabric(list(payload.urls), name=payload.context.path, auth=payload.auth)
            await stack.enter_async_context(fabric)
        if stop.is_set():
            return
        runnable = _make(payload, fabric)

        async def relay_stop(request_stop: Callable[[], None], _kill: Callable[[], None]) -> None:
            await stop.wait()
            request_stop()

        await run_until(runnable, relay_stop, task_status=_Announce(fd))


async def _serve(
    payload: NodePayload, fd: int, early: list[int], fabric: Fabric | None = None
) -> int:
    log = get_logger()
    stop = anyio.Event()
    code = ExitCode.OK
    async with anyio.create_task_group() as tg:
        tg.start_soon(_heartbeats, fd, payload.heartbeat_interval)
        await tg.start(_signals, stop, early)
        try:
            await _run_subtree(payload, fd, stop, fabric)
        except ChildShutdown:
            pass
        except Exception as exc:
            log.error("node_failed", reason=repr(exc))
            _send(fd, {"t": "error", "error": repr(exc)[:_MAX_ERROR]})
            code = ExitCode.FAILED
        finally:
            # the heartbeats end here, before the process does (its connection closing, the
            # interpreter's exit): the parent stops calling silence a hang
            _send(fd, {"t": "bye"})
            tg.cancel_scope.cancel()
    return code


def _load(data: bytes) -> NodePayload:
    """The subtree from a node's stdin: a JSON header line (``sys_path``), then the pickle."""
    from diaspora.workflow._node import NodePayload  # the payload's own class: unpickled anyway

    header_line, _, pickled = data.partition(b"\n")
    header = json.loads(header_line or b"{}")
    parent_path = [p for p in header.get("sys_path", []) if isinstance(p, str)]
    sys.path[:] = parent_path + [p for p in sys.path if p not in parent_path]
    payload = pickle.loads(pickled)
    if not isinstance(payload, NodePayload):
        raise TypeError(f"expected a NodePayload, got {type(payload).__name__}")
    return payload


def _bad_tree(fd: int, exc: Exception) -> int:
    reason = f"cannot load the subtree in the node's process: {exc!r}"
    get_logger().error("node_failed", reason=reason)
    _send(fd, {"t": "error", "error": reason[:_MAX_ERROR]})
    return ExitCode.BAD_TREE


def _read_stdin() -> bytes:
    return sys.stdin.buffer.read()  # the parent closes it after the subtree


async def _stand_by(urls: list[str], fd: int, early: list[int]) -> int:
    """Connect, say ``ready``, wait for a subtree on stdin and become its node."""
    async with Fabric(urls, name="standby", auth=standby_auth()) as fabric:
        _send(fd, {"t": "ready", "pid": os.getpid()})
        data = await anyio.to_thread.run_sync(_read_stdin, abandon_on_cancel=True)
        if not data:
            return ExitCode.OK  # the parent closed it: no node to become
        early.clear()  # a signal to the standby was not meant for the node it becomes
        _send(fd, {"t": "took"})
        try:
            payload = _load(data)
        except Exception as exc:
            return _bad_tree(fd, exc)
        fabric.name = payload.context.path
        structlog.contextvars.bind_contextvars(node=payload.context.path, node_pid=os.getpid())
        return await _serve(payload, fd, early, fabric)


def main() -> int:
    """Run the subtree given on stdin (first standing by with ``--standby URL...``)."""
    fd = os.dup(1)  # the protocol pipe; what the subtree prints goes to stderr instead
    os.dup2(2, 1)
    early: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: early.append(received))
    _die_with_parent()
    configure_logging()
    if sys.argv[1:2] == [STANDBY_FLAG]:
        import diaspora.workflow._children  # noqa: F401 - warm: what an actor's node unpickles

        return anyio.run(_stand_by, sys.argv[2:], fd, early)
    try:
        payload = _load(sys.stdin.buffer.read())
    except Exception as exc:
        return _bad_tree(fd, exc)
    structlog.contextvars.bind_contextvars(node=payload.context.path, node_pid=os.getpid())
    return anyio.run(_serve, payload, fd, early)


if __name__ == "__main__":
    sys.exit(main())
