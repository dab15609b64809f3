"""Runnables and actors that process-node tests send to child processes.

They live at module level so that they pickle by reference; the child finds
this module through the parent's ``sys.path``. Workers append lines to a log
file (``start:<path>:<pid>``, ``stop:<path>``...) so the test can read what
happened in another process.
"""

from __future__ import annotations

import atexit
import os
import time
from functools import partial
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

from diaspora import Actor, Message
from diaspora.supervision import current_child


def note(log: str, line: str) -> None:
    with open(log, "a") as f:
        f.write(line + "\n")


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


class Polite:
    """Logs its start, waits for ``request_stop``, logs its stop."""

    def __init__(self, log: str) -> None:
        self.log = log
        self._stop = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        path = current_child().path
        note(self.log, f"start:{path}:{os.getpid()}")
        task_status.started()
        await self._stop.wait()
        note(self.log, f"stop:{path}")

    def request_stop(self) -> None:
        self._stop.set()


class Stubborn(Polite):
    """Ignores ``request_stop`` (after logging it): only a kill ends it."""

    def request_stop(self) -> None:
        note(self.log, f"stop-ignored:{os.getpid()}")


class HangsOnce(Polite):
    """After ``started()``, blocks its event loop for good if ``marker`` exists (removing it)."""

    def __init__(self, log: str, marker: str) -> None:
        super().__init__(log)
        self.marker = marker

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        note(self.log, f"start:{current_child().path}:{os.getpid()}")
        task_status.started()
        if os.path.exists(self.marker):  # noqa: ASYNC240 - blocking on purpose below
            os.remove(self.marker)
            note(self.log, f"hang:{os.getpid()}")
            time.sleep(3600)  # noqa: ASYNC251 - a blocking call: no heartbeat can be sent
        await self._stop.wait()


class SlowExit(Polite):
    """Stops at once, then its interpreter takes ``seconds`` to exit (an ``atexit`` hook),
    sending no heartbeat meanwhile: a slow exit, not a hang."""

    def __init__(self, log: str, seconds: float) -> None:
        super().__init__(log)
        self.seconds = seconds

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        atexit.register(time.sleep, self.seconds)
        await super().run(task_status=task_status)


class HangsStopping(Polite):
    """Blocks its event loop for good when asked to stop: a hang while stopping."""

    def request_stop(self) -> None:
        note(self.log, f"hang:{os.getpid()}")
        time.sleep(3600)


class FailsToStart:
    """Raises before ``started()``."""

    def __init__(self) -> None:
        pass

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        raise RuntimeError("FailsToStart: no luck today")

    def request_stop(self) -> None:
        pass


class AlwaysCrashes(Actor):
    """Raises on every message of ``numbers`` (and crashes: ``on_poison = "crash"``)."""

    inputs = ("numbers",)
    on_poison = "crash"

    async def handle(self, msg: Message) -> None:
        raise RuntimeError(f"AlwaysCrashes at seq {msg.seq}")


class FailsOnStart(Actor):
    """Raises in ``on_start``: the actor never starts."""

    inputs = ("numbers",)

    async def on_start(self) -> None:
        raise RuntimeError("FailsOnStart: cannot start")

    async def handle(self, msg: Message) -> None:
        pass


def parent_with_a_standby(url: str) -> None:
    """A parent process (``python -c``): runs a process node, prints ``<node pid> <standby
    pid>`` once its standby is ready, then waits to be killed."""
    from diaspora.fabric import Fabric
    from diaspora.supervision import Supervisor, SupervisorSpec
    from diaspora.workflow import ProcessNode, process_child
    from diaspora.workflow._standby import standby_pool

    async def main() -> None:
        async with Fabric(url, name="parent") as fabric:
            sup = Supervisor(
                SupervisorSpec([process_child("w", partial(Polite, os.devnull), fabric)]),
                name="root",
            )
            async with anyio.create_task_group() as tg:
                await tg.start(sup.run)
                (record,) = await sup.which_children()
                assert isinstance(record.runnable, ProcessNode)
                standby = await standby_pool(fabric).wait_ready(60)
                print(record.runnable.pid, standby, flush=True)
                await anyio.sleep(3600)  # until the test kills this process
                tg.cancel_scope.cancel()

    anyio.run(main)
