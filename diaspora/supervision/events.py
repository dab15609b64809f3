"""Supervision events: every decision a supervisor takes, as data.

A supervisor reports each decision by awaiting its ``on_event(kind,
**fields)`` sink and logging one structlog line with the same fields. The
kinds, and the fields each carries besides ``supervisor=`` (the supervisor's
name):

======================  ======================================================
``started``             ``child``, ``incarnation`` — a child called ``started()``
``start_failed``        ``child``, ``reason`` — it raised before ``started()``
``exited``              ``child``, ``reason``, ``normal`` — it exited by itself
``restarted``           ``child``, ``incarnation``, ``attempt``, ``cause`` —
                        started again after ``cause`` (itself, or a sibling
                        under one_for_all/rest_for_one) exited; ``attempt``
                        counts ``cause``'s consecutive restarts
``backoff``             ``child``, ``attempt``, ``delay_s`` — its restart waits
``gave_up``             ``child``, ``reason``, ``restarts``, ``intensity``,
                        ``period`` — too many restarts; the supervisor fails
``terminated``          ``child``, ``reason`` (``shutdown``, ``killed`` or what
                        it raised) — the supervisor stopped it
``deleted``             ``child`` — ``delete_child`` removed its spec
======================  ======================================================

``reason`` is ``"normal"`` (``run`` returned), ``"shutdown"`` (it raised
:class:`~diaspora.errors.ChildShutdown`, or stopped when asked), ``"killed"``
(cancelled) or the ``repr`` of the exception it raised. ``child`` is the
child's id (``"<template id>-<n>"`` under ``simple_one_for_one``).

Publishing them on the fabric, under
``diaspora.events.supervision.<supervisor>.<kind>``:

>>> class PrintFabric:
...     async def emit_event(self, category: str, name: str, kind: str, **fields: object) -> None:
...         print(category, name, kind, fields)
>>> import anyio
>>> sink = fabric_events(PrintFabric())
>>> anyio.run(lambda: sink("started", supervisor="root", child="sum", incarnation=0))
supervision root started {'supervisor': 'root', 'child': 'sum', 'incarnation': 0}
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from diaspora.log import get_logger

__all__ = ["EventSink", "FabricEvents", "fabric_events"]

#: ``await on_event(kind, **fields)``; must be quick and should not raise (errors are logged).
EventSink = Callable[..., Awaitable[None]]

_LEVELS: Final = {"start_failed": "warning", "gave_up": "error"}


class _EmitsEvents(Protocol):
    async def emit_event(self, category: str, name: str, kind: str, **fields: Any) -> None: ...


class FabricEvents:
    """An :data:`EventSink` publishing on a fabric (which also logs each event).

    ``name`` fixes the ``<name>`` token of the subjects; by default each event
    goes under the name of the supervisor that emitted it, so nested
    supervisors sharing the sink keep their own subjects.
    """

    #: The fabric logs what it publishes: the supervisor does not log the event again.
    logs_events: Final = True

    def __init__(self, fabric: _EmitsEvents, name: str | None = None) -> None:
        self._fabric = fabric
        self._name = name

    async def __call__(self, kind: str, **fields: Any) -> None:
        name = self._name if self._name is not None else str(fields.get("supervisor", "_"))
        await self._fabric.emit_event("supervision", name, kind, **fields)


def fabric_events(fabric: _EmitsEvents, name: str | None = None) -> FabricEvents:
    """``on_event`` for a :class:`~diaspora.supervision.Supervisor` that publishes on ``fabric``."""
    return FabricEvents(fabric, name)


class _Reporter:
    """Logs an event (unless the sink logs it itself) and hands it to the sink."""

    def __init__(self, supervisor: str, sink: EventSink | None) -> None:
        self._supervisor = supervisor
        self._sink = sink
        self._log = get_logger()
        self._sink_logs = bool(getattr(sink, "logs_events", False))

    async def __call__(self, kind: str, **fields: Any) -> None:
        fields = {"supervisor": self._supervisor, **fields}
        if not self._sink_logs:
            level = _LEVELS.get(kind, "info")
            if kind == "exited" and not fields.get("normal", True):
                level = "warning"
            getattr(self._log, level)(kind, **fields)
        if self._sink is None:
            return
        try:
            await self._sink(kind, **fields)
        except Exception as exc:  # a broken sink must not break supervision
            self._log.warning("event_sink_failed", kind=kind, error=repr(exc), **fields)
