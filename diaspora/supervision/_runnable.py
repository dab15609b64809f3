"""The contract between a supervisor and what it supervises.

Anything a supervisor starts — an actor's runtime, a nested supervisor, an OS
process hosting a subtree — is a :class:`Runnable`:

- ``await run(task_status=...)`` starts it. It calls ``task_status.started()``
  once it is initialised (an actor: checkpoint restored, ``on_start`` done),
  so the supervisor can start the next child in order. An exception raised
  before ``started()`` is a failure to start.
- ``run`` returning is a **normal** exit; raising is an **abnormal** exit
  whose reason is the exception; being cancelled is a **kill**.
- ``request_stop()`` asks for a graceful stop (OTP's ``shutdown`` exit
  signal): ``run`` should finish its current work and return soon. The
  supervisor cancels it if it has not returned within the child's
  ``shutdown`` timeout.

At the top of a process (``diaspora run``, ``diaspora actor``, a process
node) nothing supervises the root: :func:`run_until` runs it until a watcher
(a signal, an event) asks it to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskStatus

__all__ = ["Runnable", "Stopper", "run_until"]


@runtime_checkable
class Runnable(Protocol):
    """Something a supervisor can start, stop and watch."""

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """Run until done (return), failed (raise) or cancelled."""
        ...

    def request_stop(self) -> None:
        """Ask ``run`` to return soon; must be safe to call at any time, repeatedly."""
        ...


#: Watches for a reason to stop, given two callbacks: ``stop()`` asks the
#: runnable to stop gracefully, ``kill()`` cancels it. Cancelled once the
#: runnable has returned.
Stopper = Callable[[Callable[[], None], Callable[[], None]], Coroutine[Any, Any, None]]


async def run_until(
    runnable: Runnable,
    stopper: Stopper,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``runnable`` beside ``stopper`` until it returns; re-raise its error as it is.

    The error is raised outside the task group, so a caller catches the
    runnable's own exception, not an ``ExceptionGroup`` around it. A
    ``kill()`` cancels the runnable: ``run_until`` then returns normally.

    >>> class Once:
    ...     def __init__(self) -> None:
    ...         self.stopping = anyio.Event()
    ...     async def run(self, *, task_status: TaskStatus[None]) -> None:
    ...         task_status.started()
    ...         await self.stopping.wait()
    ...         raise ValueError("asked to stop, failed instead")
    ...     def request_stop(self) -> None:
    ...         self.stopping.set()
    >>> async def stop_at_once(stop, kill) -> None:
    ...     stop()
    >>> anyio.run(run_until, Once(), stop_at_once)
    Traceback (most recent call last):
    ...
    ValueError: asked to stop, failed instead
    """
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        kill: Callable[[], None] = tg.cancel_scope.cancel
        tg.start_soon(stopper, runnable.request_stop, kill)
        try:
            await runnable.run(task_status=task_status)
        except Exception as exc:
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
