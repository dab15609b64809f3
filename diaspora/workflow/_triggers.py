"""Triggers as children of the root: :func:`trigger_child` and the ``[[triggers]]`` tables.

Each ``[[triggers]]`` table of a workflow file becomes
``trigger_child(TriggerSpec.from_mapping(table))``: an actor child of the
root supervisor, id ``trigger-<name>`` (actor id ``root.trigger-<name>``).

>>> from diaspora.triggers import PublishAction, TriggerSpec
>>> child = trigger_child(TriggerSpec("hot", "readings", PublishAction("alerts")))
>>> child.id, child.start.inputs
('trigger-hot', ('readings',))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diaspora.errors import ConfigError
from diaspora.supervision._spec import ChildSpec, Restart, Shutdown
from diaspora.triggers import Trigger, TriggerSpec, stage_factory
from diaspora.workflow._children import ActorStart

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["parse_triggers", "trigger_child"]


def trigger_child(
    spec: TriggerSpec,
    fabric: Fabric | None = None,
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown | None = None,
) -> ChildSpec:
    """The child spec of a trigger: id ``trigger-<name>``, the :class:`~diaspora.triggers.Trigger`
    actor on ``spec.subject`` with its stage (``fabric`` may be bound later)."""
    start = ActorStart(
        Trigger, fabric, {"spec": spec}, (spec.subject,), stages=(stage_factory(spec),)
    )
    return ChildSpec(f"trigger-{spec.name}", start, restart=restart, shutdown=shutdown)


def parse_triggers(value: object, source: str) -> list[ChildSpec]:
    """The children of a file's ``[[triggers]]`` array; errors name ``source`` and the field."""
    if not isinstance(value, list):
        raise ConfigError(f"{source}: triggers: expected an array of tables ([[triggers]])")
    out: list[ChildSpec] = []
    names: dict[str, int] = {}
    for i, table in enumerate(value):
        where = f"triggers[{i}]"
        spec = TriggerSpec.from_mapping(_table(table, source, where), where=f"{source}: {where}")
        if spec.name in names:
            raise ConfigError(
                f"{source}: {where}.name: duplicate trigger {spec.name!r} "
                f"(also triggers[{names[spec.name]}])"
            )
        names[spec.name] = i
        out.append(trigger_child(spec))
    return out


def _table(value: object, source: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {where}: {value!r} is not a table")
    return value
