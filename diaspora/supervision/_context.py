"""Who a child is, for the code that starts and runs it.

A supervisor calls a child's ``start`` function, and runs the returned
:class:`~diaspora.supervision.Runnable`, with a :class:`ChildContext` set, so
that neither needs extra parameters to learn its place in the tree: an actor
composes its id as ``current_child().path`` (``"root.ingest.sum"``).

>>> def start() -> str:                  # a start function reads its context
...     return current_child().path
>>> token = _CURRENT.set(ChildContext(supervisor="root.ingest", id="sum"))
>>> start()
'root.ingest.sum'
>>> _CURRENT.reset(token)
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diaspora.events import EventSink

__all__ = ["ChildContext", "child_events", "current_child"]


@dataclass(frozen=True, slots=True)
class ChildContext:
    """A child's place in the supervision tree, as seen by its own code.

    ``supervisor`` is the name of the supervisor that started it (a dotted path
    from the root, ``"root.ingest"``). ``id`` is the child's id; the children
    of a ``simple_one_for_one`` supervisor, which have no id in OTP, get
    ``"<template id>-<n>"`` with ``n`` counting from 1 in start order and kept
    across restarts. ``incarnation`` is 0 on the first start and grows by one
    on every later start of the same child (restart, sibling restart,
    ``restart_child``). ``args`` are the ``start_child`` arguments of a
    ``simple_one_for_one`` child. ``events`` is where the child reports what
    it decides itself (a process node's process started, hung or exited): its
    supervisor's event sink, which logs each event once and never raises;
    ``None`` when the supervisor has no sink (the child then uses its own
    default, its fabric); a process node does not send it to its process.
    """

    supervisor: str
    id: str
    incarnation: int = 0
    args: tuple[Any, ...] = ()
    events: EventSink | None = field(default=None, compare=False, repr=False)

    @property
    def path(self) -> str:
        """``supervisor.id``: the child's name in the whole tree (an actor's id)."""
        return f"{self.supervisor}.{self.id}"


_CURRENT: ContextVar[ChildContext] = ContextVar("diaspora_supervision_child")


def current_child() -> ChildContext:
    """The context of the child whose ``start`` function or ``run`` is calling.

    Raises :class:`LookupError` outside a supervised child.
    """
    try:
        return _CURRENT.get()
    except LookupError:
        raise LookupError(
            "current_child() called outside a supervised child: only a ChildSpec's start "
            "function and the Runnable it returns (and the tasks it starts) have one"
        ) from None


def child_events(default: EventSink) -> EventSink:
    """Where the calling child reports its own events: its supervisor's sink, else ``default``.

    ``default`` (say, the child's fabric) serves outside a supervised child and
    under a supervisor that has no sink.

    >>> from diaspora.events import LogSink, MemorySink
    >>> fallback, sink = LogSink(), MemorySink()
    >>> child_events(fallback) is fallback
    True
    >>> token = _CURRENT.set(ChildContext("root", "group", events=sink))
    >>> child_events(fallback) is sink
    True
    >>> _CURRENT.reset(token)
    """
    context = _CURRENT.get(None)
    if context is None or context.events is None:
        return default
    return context.events
