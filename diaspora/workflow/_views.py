"""Views as children of the root: :func:`view_child` and the ``[views.<name>]`` tables.

Each ``[views.<name>]`` table of a workflow file becomes
``view_child(view_from_table(name, table))``: an actor child of the root
supervisor, id ``<name>`` (actor id ``<root>.<name>``), in its own OS process
with ``process = true``, at a site with ``site = "..."``.

>>> from diaspora.views import Source, View
>>> view = View("pairs", output="pairs", key=("id",), within=30.0,
...             sources={"a": Source("a"), "b": Source("b")})
>>> child = view_child(view)
>>> child.id, child.start.inputs
('pairs', ('a', 'b'))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diaspora.errors import ConfigError
from diaspora.supervision._spec import ChildSpec, Restart, Shutdown
from diaspora.views import View, ViewActor, liveness_stages, stage_factory, view_from_table
from diaspora.workflow._children import ActorStart
from diaspora.workflow._node import process_child

if TYPE_CHECKING:
    from diaspora.fabric import Fabric
    from diaspora.stage import StageFactory

__all__ = ["parse_views", "view_child"]


def view_start(view: View, fabric: Fabric | None = None) -> ActorStart:
    """The start function of a view's actor (its stage, pin keeper and snapshots included)."""
    stages: tuple[StageFactory, ...] = (stage_factory(view), *liveness_stages(view))
    return ActorStart(ViewActor, fabric, {"view": view}, view.subjects, stages=stages)


def view_child(
    view: View,
    fabric: Fabric | None = None,
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown | None = None,
    process: bool = False,
) -> ChildSpec:
    """The child spec of a view: id ``view.name``, the :class:`~diaspora.views.ViewActor`
    on the view's sources with its stage, in a process node if ``process``
    (``fabric`` may be bound later)."""
    start = view_start(view, fabric)
    if process:
        return process_child(view.name, start, fabric, restart=restart, shutdown=shutdown)
    return ChildSpec(view.name, start, restart=restart, shutdown=shutdown)


def parse_views(value: object, source: str) -> list[tuple[ChildSpec, dict[str, Any]]]:
    """The children of a file's ``[views.<name>]`` tables, each with its table (for
    placement); errors name ``source`` and the field."""
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: views: expected [views.<name>] tables")
    out = []
    for name, table in value.items():
        view = view_from_table(name, table, where=source)
        process = table.get("process", False)
        if not isinstance(process, bool):
            raise ConfigError(f"{source}: views.{name}.process: {process!r} is not true or false")
        out.append((view_child(view, process=process), table))
    return out
