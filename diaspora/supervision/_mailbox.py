"""The supervisor's mailbox: child exits, due restarts and runtime calls, in arrival order.

A :class:`~diaspora.supervision.Supervisor` handles one message at a time in
its own task. A runtime call (``start_child``…) is posted as a ``_Call`` and
its caller waits until the supervisor has served it; calls still queued when
the supervisor ends fail with :class:`~diaspora.errors.SupervisorNotRunning`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from diaspora.errors import SupervisorNotRunning
from diaspora.supervision._records import _Call, _Message, _Stopping

__all__: list[str] = []

_T = TypeVar("_T")


class _Mailbox:
    """The unbounded queue of the supervisor ``name``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._outbox, self._inbox = anyio.create_memory_object_stream[_Message](math.inf)

    def post(self, message: _Message) -> None:
        # once the supervisor has ended nothing is listening
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._outbox.send_nowait(message)

    async def receive(self) -> _Message:
        return await self._inbox.receive()

    async def call(self, op: Callable[[], Awaitable[_T]]) -> _T:
        """Post ``op`` and wait until the supervisor has run it; its result, or its error."""
        call = _Call(op)
        try:
            self._outbox.send_nowait(call)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise SupervisorNotRunning(f"supervisor {self._name!r} is not running") from None
        await call.done.wait()
        if call.error is not None:
            raise call.error
        result: _T = call.result
        return result

    async def serve(self, call: _Call) -> None:
        """Run ``call`` in the supervisor's task and hand its outcome to the caller."""
        try:
            call.result = await call.op()
        except _Stopping:
            call.error = SupervisorNotRunning(
                f"supervisor {self._name!r} was asked to stop while serving this call"
            )
            raise
        except Exception as exc:
            call.error = exc
        except BaseException:
            call.error = SupervisorNotRunning(f"supervisor {self._name!r} was cancelled")
            raise
        finally:
            call.done.set()

    def close(self) -> None:
        """Take no more messages; fail the calls still queued."""
        self._outbox.close()
        while True:
            try:
                message = self._inbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            if isinstance(message, _Call) and not message.done.is_set():
                message.error = SupervisorNotRunning(f"supervisor {self._name!r} has stopped")
                message.done.set()
