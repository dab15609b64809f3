"""Monitors as children of the root: :func:`monitor_child`, ``[[monitors]]`` and ``[metrics]``.

Each ``[[monitors]]`` table of a workflow file becomes
``monitor_child(MonitorSpec.from_mapping(table))``: an actor child of the
root supervisor, id ``monitor-<name>`` (actor id ``root.monitor-<name>``),
restarted from its checkpoint like any actor. A ``[metrics]`` table (``url``
of the server's monitoring port, ``period``, ``prefix``) adds the built-in
metrics source, child ``metrics``, ahead of the monitors.

>>> from diaspora.predict import MonitorSpec
>>> child = monitor_child(MonitorSpec("lag", "diaspora.events.actor.*.lag", value="lag"))
>>> child.id, child.start.inputs
('monitor-lag', ('diaspora.events.actor.*.lag',))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from diaspora.errors import ConfigError
from diaspora.predict import MetricsSource, MetricsSpec, Monitor, MonitorSpec, ScaleAction
from diaspora.supervision._spec import ChildSpec, Restart, Shutdown
from diaspora.workflow._children import ActorStart

if TYPE_CHECKING:
    from diaspora.fabric import Fabric
    from diaspora.supervision import SupervisorSpec

__all__ = ["add_monitors", "metrics_child", "monitor_child", "parse_monitors"]


class _Parser(Protocol):
    source: str

    def root_with(
        self, root: SupervisorSpec, children: list[ChildSpec], key: str
    ) -> SupervisorSpec: ...


def add_monitors(parser: _Parser, document: dict[str, Any], root: SupervisorSpec) -> SupervisorSpec:
    """``root`` with a file's ``[metrics]`` source and ``[[monitors]]`` as its last children."""
    if "metrics" in document:
        spec = MetricsSpec.from_mapping(document["metrics"], f"{parser.source}: metrics")
        root = parser.root_with(root, [metrics_child(spec)], "metrics")
    if "monitors" in document:
        monitors = parse_monitors(document["monitors"], parser.source, document.get("pools"))
        root = parser.root_with(root, monitors, "monitors")
    return root


def metrics_child(spec: MetricsSpec, fabric: Fabric | None = None) -> ChildSpec:
    """The child spec of the metrics source: id ``metrics`` (samples to ``<prefix>.<metric>``)."""
    return ChildSpec("metrics", ActorStart(MetricsSource, fabric, {"spec": spec}, ()))


def monitor_child(
    spec: MonitorSpec,
    fabric: Fabric | None = None,
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown | None = None,
) -> ChildSpec:
    """The child spec of a monitor: id ``monitor-<name>``, the :class:`~diaspora.predict.Monitor`
    actor on ``spec.on`` (``fabric`` may be bound later)."""
    start = ActorStart(Monitor, fabric, {"spec": spec}, (spec.on,))
    return ChildSpec(f"monitor-{spec.name}", start, restart=restart, shutdown=shutdown)


def parse_monitors(value: object, source: str, pools: object = None) -> list[ChildSpec]:
    """The children of a file's ``[[monitors]]`` array; errors name ``source``, the monitor
    and the field (``flow.toml: monitors[0] (lagging).alert.for: ...``). A ``scale:``
    action must name a pool of the file's ``[pools]`` (``pools``) and one of its sites."""
    if not isinstance(value, list):
        raise ConfigError(f"{source}: monitors: expected an array of tables ([[monitors]])")
    out: list[ChildSpec] = []
    names: dict[str, int] = {}
    for i, table in enumerate(value):
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: monitors[{i}]: {table!r} is not a table")
        label = table.get("name")
        where = f"{source}: monitors[{i}]" + (f" ({label})" if isinstance(label, str) else "")
        spec = MonitorSpec.from_mapping(_table(table), where=where)
        if spec.name in names:
            raise ConfigError(
                f"{where}.name: duplicate monitor {spec.name!r} (also monitors[{names[spec.name]}])"
            )
        names[spec.name] = i
        for j, action in enumerate(spec.actions):
            if isinstance(action, ScaleAction):
                _check_scale(action, pools, f"{where}.actions[{j}]")
        out.append(monitor_child(spec))
    return out


def _check_scale(action: ScaleAction, pools: object, where: str) -> None:
    """``action``'s pool is declared in the file, its site is one of the pool's."""
    declared = pools if isinstance(pools, dict) else {}
    pool = declared.get(action.pool)
    if not isinstance(pool, dict):
        raise ConfigError(
            f"{where}: scale:{action.pool}.{action.site}: no pool {action.pool!r} in [pools] "
            f"(declared: {', '.join(declared) or 'none'}): declare [pools.{action.pool}] or fix "
            "the name"
        )
    sites = pool.get("sites")
    if isinstance(sites, dict) and action.site not in sites:
        raise ConfigError(
            f"{where}: scale:{action.pool}.{action.site}: {action.site!r} is not a site of pool "
            f"{action.pool!r} (its sites: {', '.join(sites)})"
        )


def _table(value: dict[str, Any]) -> dict[str, Any]:
    return value
