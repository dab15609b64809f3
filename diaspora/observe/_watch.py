"""Keeping a :class:`WorkflowModel` up to date from a live fabric.

:class:`Watcher` replays the events the stream holds (the last ``history``
seconds), follows the live ones, and every ``poll_s`` asks the servers what
only they know: each running actor's consumer backlog (its lag in items)
and, for each monitoring URL given, the leaf links (RTT, bytes moved).
Everything is read-only; a fabric that reconnects is waited out.

>>> import anyio
>>> from diaspora.events import Crashed
>>> from diaspora.fabric import Fabric
>>> async def demo() -> None:
...     async with Fabric() as fabric:
...         watcher = Watcher(fabric)
...         async with anyio.create_task_group() as tg:
...             tg.start_soon(watcher.run)
...             await watcher.caught_up.wait()
...             await fabric.emit(Crashed(name="root.sum", reason="boom"))
...             await watcher.changed(0)
...             tg.cancel_scope.cancel()
...         print(watcher.model.snapshot()["tree"][1]["state"])
>>> anyio.run(demo)
crashed
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from diaspora.actor._mailbox import consumer_name
from diaspora.errors import FabricUnavailable
from diaspora.fabric import Fabric, monitor_json
from diaspora.log import get_logger
from diaspora.observe._model import WorkflowModel
from diaspora.observe._reader import EventFilter, Observed, read_events

__all__ = ["Watcher"]


class Watcher:
    """Feeds a model from ``fabric`` until cancelled (see the module docstring).

    ``history``: seconds of past events to replay first (``None``: all the
    stream holds). ``monitors``: monitoring URLs of servers whose leaf links
    to show (``http://127.0.0.1:8222``).
    """

    def __init__(
        self,
        fabric: Fabric,
        *,
        model: WorkflowModel | None = None,
        history: float | None = 3600.0,
        monitors: Sequence[str] = (),
        poll_s: float = 1.0,
    ) -> None:
        self.fabric = fabric
        self.model = model or WorkflowModel()
        self.history = history
        self.monitors = tuple(monitors)
        self.poll_s = poll_s
        #: set once the stored events are folded in (the live ones follow)
        self.caught_up = anyio.Event()
        self._changed = anyio.Event()
        self._log = get_logger()

    async def changed(self, version: int, timeout: float | None = None) -> int:
        """Wait until the model's version is past ``version`` (or ``timeout``); the version."""
        with anyio.move_on_after(timeout):
            while self.model.version <= version:
                if self._changed.is_set():  # set before the version was read: arm a new one
                    self._changed = anyio.Event()
                await self._changed.wait()
        return self.model.version

    def _notify(self) -> None:
        if not self._changed.is_set():  # making an event per fold costs more than the fold
            self._changed.set()

    async def run(self) -> None:
        """Follow the events and poll the servers, forever (cancel to stop)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow)
            tg.start_soon(self._poll)

    async def _follow(self) -> None:
        since = None if self.history is None else time.time() - self.history
        where = EventFilter(since=since)
        async with read_events(self.fabric, where=where) as events:
            next_seq = None
            async for seen in events:
                self.apply(seen)
                next_seq = seen.seq + 1
        self.caught_up.set()
        async with read_events(self.fabric, follow=True, where=where, start_seq=next_seq) as live:
            async for seen in live:
                self.apply(seen)

    def apply(self, seen: Observed) -> None:
        """Fold one event and wake whoever waits for a change."""
        self.model.apply(seen)
        self._notify()

    async def _poll(self) -> None:
        while True:
            await anyio.sleep(self.poll_s)
            self.model.connected = self.fabric.is_connected
            if self.fabric.is_connected:
                await self.poll_once()
            self._notify()

    async def poll_once(self) -> None:
        """Ask the servers once: consumer backlogs, then leaf links."""
        now = time.time()
        for actor, inputs in self.model.running_inputs().items():
            total, answered = 0, False
            for subject in inputs:
                backlog = await self.fabric.consumer_backlog(subject, consumer_name(actor, subject))
                if backlog is not None:
                    total, answered = total + backlog, True
            if answered:
                self.model.backlog(actor, total, now)
        for url in self.monitors:
            try:
                self.model.leafz(await monitor_json(url, "leafz"), now)
            except FabricUnavailable as exc:
                self._log.debug("watch_monitor_unanswered", url=url, error=repr(exc))
