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
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from anyio.abc import TaskStatus

__all__ = ["Runnable"]


@runtime_checkable
class Runnable(Protocol):
    """Something a supervisor can start, stop and watch."""

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """Run until done (return), failed (raise) or cancelled."""
        ...

    def request_stop(self) -> None:
        """Ask ``run`` to return soon; must be safe to call at any time, repeatedly."""
        ...
