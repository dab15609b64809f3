"""Binding a supervision tree to a fabric: starts that need one get it when the tree runs.

A spec parsed from a config file, or sent to a process node, names its actors
but holds no connection. :func:`bind_fabric` returns the same tree with every
start that needs a fabric (a :class:`FabricBound`: an actor, a process node)
bound to one; ``bind_fabric(spec, None)`` unbinds it again.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class NeedsFabric:
...     fabric: object = None
...     def with_fabric(self, fabric: object) -> "NeedsFabric":
...         return NeedsFabric(fabric)
...     def __call__(self) -> None: ...
>>> spec = SupervisorSpec([ChildSpec("a", NeedsFabric()), ChildSpec("sub", SupervisorSpec(
...     [ChildSpec("b", NeedsFabric())]))])
>>> bound = bind_fabric(spec, "the fabric")
>>> bound.children[0].start.fabric, bound.children[1].start.children[0].start.fabric
('the fabric', 'the fabric')
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

from diaspora.supervision._spec import ChildSpec, StartFn, SupervisorSpec

__all__ = ["FabricBound", "StageBound", "add_stages", "bind_fabric", "bind_start"]


@runtime_checkable
class FabricBound(Protocol):
    """A child's start function that needs a fabric, and can be given (or stripped of) one."""

    def with_fabric(self, fabric: Any) -> Any:
        """The same start function, using ``fabric`` (``None``: unbound)."""
        ...


@runtime_checkable
class StageBound(Protocol):
    """A child's start function that runs actors, and can be given extra runtime stages."""

    def with_stages(self, stages: tuple[Any, ...]) -> Any:
        """The same start function, its actors running ``stages`` too (stage factories)."""
        ...


def add_stages(spec: SupervisorSpec, stages: tuple[Any, ...]) -> SupervisorSpec:
    """A copy of ``spec`` whose actors, at every depth and in process nodes, run ``stages`` too.

    ``stages`` are stage factories (:data:`diaspora.stage.StageFactory`) that
    pickle by reference; :mod:`diaspora.testing` installs fault injection so.
    """
    children = []
    for child in spec.children:
        start = child.start
        if isinstance(start, SupervisorSpec):
            start = add_stages(start, stages)
        elif isinstance(start, StageBound):
            start = start.with_stages(stages)
        children.append(child if start is child.start else dataclasses.replace(child, start=start))
    return dataclasses.replace(spec, children=children)


def bind_start(start: StartFn | SupervisorSpec, fabric: Any) -> StartFn | SupervisorSpec:
    """``start`` bound to ``fabric`` (a nested supervisor's children too); others unchanged."""
    if isinstance(start, SupervisorSpec):
        return bind_fabric(start, fabric)
    if isinstance(start, FabricBound):
        bound: StartFn = start.with_fabric(fabric)
        return bound
    return start


def bind_fabric(spec: SupervisorSpec, fabric: Any) -> SupervisorSpec:
    """A copy of ``spec`` whose fabric-bound starts use ``fabric``, at every depth."""
    children = [_bind_child(child, fabric) for child in spec.children]
    return dataclasses.replace(spec, children=children)


def _bind_child(child: ChildSpec, fabric: Any) -> ChildSpec:
    start = bind_start(child.start, fabric)
    return child if start is child.start else dataclasses.replace(child, start=start)
