"""A supervisor's children in start order, and the lookups and checks its calls make on them.

:class:`~diaspora.supervision.Supervisor` keeps its children in a
``_Children``: it finds one by id or Runnable, makes a new one for
``start_child`` (refusing a duplicate id), checks that one is stopped
before ``restart_child``/``delete_child``, draws the set a strategy
restarts, and answers ``which_children``/``count_children``. Every error
names the supervisor and says what to do.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from diaspora.errors import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    SimpleOneForOneError,
)
from diaspora.supervision._records import ChildCounts, ChildRecord, _Child
from diaspora.supervision._runnable import Runnable
from diaspora.supervision._spec import ChildSpec, ChildType, Strategy, SupervisorSpec

__all__: list[str] = []


class _Children:
    """The children of the supervisor ``name`` running ``spec``, in start order."""

    def __init__(self, name: str, spec: SupervisorSpec) -> None:
        self._name = name
        self._spec = spec
        self._list: list[_Child] = []
        self._serial = 0
        # handles of dynamic children that have ended: terminate_child(handle) of one is ok
        self._ended: weakref.WeakSet[Runnable] = weakref.WeakSet()

    def __iter__(self) -> Iterator[_Child]:
        return iter(self._list)

    def __reversed__(self) -> Iterator[_Child]:
        return reversed(self._list)

    @property
    def simple(self) -> bool:
        return self._spec.strategy is Strategy.SIMPLE_ONE_FOR_ONE

    def append(self, child: _Child) -> None:
        """Add ``child`` (started) after the others."""
        self._list.append(child)

    def remove(self, child: _Child) -> None:
        """Forget ``child``, and the restart it was waiting for."""
        self.unpend(child)
        self._list.remove(child)
        if child.dynamic and child.handle is not None:
            # a Runnable that cannot be weakly referenced is not kept
            with contextlib.suppress(TypeError):
                self._ended.add(child.handle)

    def ended(self, ref: str | Runnable) -> bool:
        """Whether ``ref`` is the handle of a dynamic child that has ended (and was removed)."""
        if isinstance(ref, str):
            return False
        try:
            return ref in self._ended
        except TypeError:
            return False

    def unpend(self, child: _Child) -> None:
        """``child`` no longer waits for its restart (cancelled if nobody else waits for it)."""
        pending, child.pending = child.pending, None
        if pending is not None and not any(c.pending is pending for c in self._list):
            pending.cancel()

    def restart_set(self, cause: _Child) -> list[_Child]:
        """The children the strategy restarts when ``cause`` exits, in start order."""
        strategy = self._spec.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            return list(self._list)
        if strategy is Strategy.REST_FOR_ONE:
            return self._list[self._list.index(cause) :]
        return [cause]

    def find(self, ref: str | Runnable) -> _Child:
        for child in self._list:
            if isinstance(ref, str):
                if not child.dynamic and child.name == ref:
                    return child
            elif child.handle is ref or (
                child.incarnation is not None and child.incarnation.runnable is ref
            ):
                return child
        raise ChildNotFound(f"supervisor {self._name!r} has no child {ref!r}")

    def not_simple(self, call: str) -> None:
        if self.simple:
            raise SimpleOneForOneError(
                f"supervisor {self._name!r} is simple_one_for_one: {call} is not supported "
                "(its children have no ids; use terminate_child(handle) and start_child(*args))"
            )

    def new(self, args: tuple[Any, ...]) -> _Child:
        """The child ``start_child(*args)`` adds (not started, not added yet)."""
        if self.simple:
            template = self._spec.children[0]
            self._serial += 1
            return _Child(template, f"{template.id}-{self._serial}", args=args, dynamic=True)
        if len(args) != 1 or not isinstance(args[0], ChildSpec):
            raise TypeError(
                f"supervisor {self._name!r}: start_child takes one ChildSpec (only "
                f"simple_one_for_one supervisors take start arguments), got {args!r}"
            )
        spec = args[0]
        for existing in self._list:
            if existing.name == spec.id:
                if existing.incarnation is not None:
                    raise ChildAlreadyStarted(
                        f"supervisor {self._name!r}: child {spec.id!r} is already running"
                    )
                raise ChildAlreadyPresent(
                    f"supervisor {self._name!r}: child {spec.id!r} is already present: "
                    "use restart_child, or delete_child first"
                )
        return _Child(spec, spec.id)

    def check_stopped(self, child: _Child) -> None:
        if child.incarnation is not None:
            raise ChildRunning(
                f"supervisor {self._name!r}: child {child.name!r} is running: "
                "terminate_child it first"
            )
        if child.pending is not None:
            raise ChildRestarting(
                f"supervisor {self._name!r}: child {child.name!r} is waiting to be restarted: "
                "terminate_child it first"
            )

    async def records(self) -> list[ChildRecord]:
        """``which_children`` (run as a call in the supervisor's task)."""
        return [
            ChildRecord(
                id=None if child.dynamic else child.name,
                runnable=child.incarnation.runnable if child.incarnation is not None else None,
                type=child.spec.effective_type,
                status=child.status,
            )
            for child in self._list
        ]

    async def counts(self) -> ChildCounts:
        """``count_children`` (run as a call in the supervisor's task)."""
        children = self._list
        active = sum(1 for c in children if c.incarnation is not None)
        supervisors = sum(1 for c in children if c.spec.effective_type is ChildType.SUPERVISOR)
        specs = 1 if self.simple else len(children)
        return ChildCounts(specs, active, supervisors, len(children) - supervisors)
