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
from dataclasses import dataclass
from typing import Any

__all__ = ["ChildContext", "current_child"]


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
    ``simple_one_for_one`` child.
    """

    supervisor: str
    id: str
    incarnation: int = 0
    args: tuple[Any, ...] = ()

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
