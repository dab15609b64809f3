"""Supervision events: every decision a supervisor takes, as a typed value.

A supervisor hands each decision to its ``on_event`` sink, any
:class:`diaspora.events.EventSink` (a :class:`~diaspora.fabric.Fabric`
publishes it under ``diaspora.events.supervision.<supervisor>.<kind>``, a
:class:`~diaspora.events.MemorySink` keeps it), and logs it once, unless the
sink logs it itself. Each event's ``name`` is the supervisor's name and
``child`` the child's id (``"<template id>-<n>"`` under
``simple_one_for_one``); its log line and wire record carry them as
``supervisor=`` and ``child=``:

- :class:`~diaspora.events.ChildStarted` (``started``): ``incarnation`` —
  the child called ``started()``;
- :class:`~diaspora.events.StartFailed` (``start_failed``): ``reason`` — it
  raised before ``started()``;
- :class:`~diaspora.events.Exited` (``exited``): ``reason``, ``normal`` — it
  exited by itself;
- :class:`~diaspora.events.Restarted` (``restarted``): ``incarnation``,
  ``attempt``, ``cause`` — started again after ``cause`` (itself, or a sibling
  under one_for_all or rest_for_one) exited; ``attempt`` counts ``cause``'s
  consecutive restarts;
- :class:`~diaspora.events.BackingOff` (``backoff``): ``attempt``,
  ``delay_s`` — its restart waits;
- :class:`~diaspora.events.GaveUp` (``gave_up``): ``reason``, ``restarts``,
  ``intensity``, ``period`` — too many restarts: the supervisor fails to its
  parent;
- :class:`~diaspora.events.Terminated` (``terminated``): ``reason``
  (``shutdown``, ``killed`` or what it raised) — the supervisor stopped it;
- :class:`~diaspora.events.Deleted` (``deleted``) — ``delete_child`` removed
  its spec;
- :class:`~diaspora.events.Ignored` (``ignored``): ``removed`` — its start
  declined (OTP's ``ignore``); ``removed`` if it was forgotten (temporary, or
  under ``simple_one_for_one``);
- :class:`~diaspora.events.SelfShutdown` (``auto_shutdown``): ``policy`` — the
  significant child exited for good and the supervisor stops itself.

A process node reports its own process through the same sink (see
:mod:`diaspora.workflow._node`): :class:`~diaspora.events.NodeStarted`,
:class:`~diaspora.events.NodeHung` and :class:`~diaspora.events.NodeExited`.

``reason`` is ``"normal"`` (``run`` returned), ``"shutdown"`` (it raised
:class:`~diaspora.errors.ChildShutdown`, or stopped when asked), ``"killed"``
(cancelled) or the ``repr`` of the exception it raised.

>>> import anyio
>>> from anyio.abc import TaskStatus
>>> from diaspora.events import MemorySink
>>> from diaspora.supervision import ChildSpec, Supervisor, SupervisorSpec
>>> class Idle:
...     def __init__(self) -> None:
...         self.stop = anyio.Event()
...     async def run(self, *, task_status: TaskStatus[None]) -> None:
...         task_status.started()
...         await self.stop.wait()
...     def request_stop(self) -> None:
...         self.stop.set()
>>> sink = MemorySink()
>>> async def main() -> None:
...     sup = Supervisor(SupervisorSpec([ChildSpec("job", Idle)]), name="root", on_event=sink)
...     async with anyio.create_task_group() as tg:
...         await tg.start(sup.run)
...         sup.request_stop()
>>> anyio.run(main)
>>> [(type(e).__name__, e.child) for e in sink.events]
[('ChildStarted', 'job'), ('Terminated', 'job')]
>>> sink.events[1].fields()
{'supervisor': 'root', 'child': 'job', 'reason': 'shutdown'}
"""

from __future__ import annotations

from typing import Final

from diaspora.events import Event, EventSink, log_event, logs_events
from diaspora.log import get_logger

__all__: list[str] = []


class _Reporter:
    """A supervisor's own sink: logs each event once (unless ``sink`` does), then hands it on.

    It never raises (a sink that does is logged). A supervisor's children get
    it as :attr:`~diaspora.supervision.ChildContext.events`, so what they
    report themselves (a process node's process) reaches the same sink.
    """

    logs_events: Final = True

    def __init__(self, sink: EventSink | None) -> None:
        self.sink = sink
        self._log = get_logger()
        self._sink_logs = logs_events(sink)

    async def emit(self, event: Event) -> None:
        if not self._sink_logs:
            log_event(self._log, event)
        if self.sink is None:
            return
        try:
            await self.sink.emit(event)
        except Exception as exc:  # a broken sink must not break supervision
            self._log.warning(
                "event_sink_failed", kind=event.kind, error=repr(exc), **event.fields()
            )
