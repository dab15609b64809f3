"""``[pools.<name>]`` tables and the actor children that run in them (``pool = "<name>"``).

A pool's table is read by :meth:`PoolSpec.from_mapping
<diaspora.compute.PoolSpec.from_mapping>` (the checker Python users get
too); this module puts the file in front of its errors, checks the pool's
sites against ``[sites]`` when the file declares them, collects the actors
whose table says ``pool = "<name>"`` (with ``site``: its home, one of the
pool's sites; ``movable = true``: it may run at another site of the pool
when its own is lost) and adds each pool's controller to the root
supervisor as child ``pool-<name>``. A pooled actor keeps its id (its path
in the tree, ``root.solve``) but is supervised by the pool, not by the
supervisor it is listed under.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final

from diaspora._tomlfile import TomlReader
from diaspora.compute._pools import PoolActor, PoolSpec
from diaspora.errors import ConfigError
from diaspora.fabric._sitespec import SiteSpec
from diaspora.supervision._spec import Strategy, SupervisorSpec
from diaspora.workflow._children import ActorStart
from diaspora.workflow._poolchild import pool_child

__all__ = ["POOLED_KEYS", "Pooled", "add_pools", "pooled_actor"]

#: The keys an actor child in a pool may have (the pool's worker is its process).
POOLED_KEYS: Final = frozenset(
    {
        "id", "actor", "args", "inputs", "max_attempts", "on_poison", "site", "pool", "movable",
        "return_home",
    }
)  # fmt: skip

#: pool name -> (where each actor was declared, the actor)
Pooled = dict[str, list[tuple[str, PoolActor]]]


def pooled_actor(
    reader: TomlReader, table: dict[str, Any], where: str, path: str, start: ActorStart
) -> tuple[str, PoolActor]:
    """The pool an actor child names, and the actor as the pool runs it."""
    extra = sorted(set(table) - POOLED_KEYS)
    if extra:
        raise reader.fail(
            f"{where}.{extra[0]}",
            "does not apply to an actor in a pool (its pool's controller starts, restarts "
            f"and places it); an actor in a pool takes {', '.join(sorted(POOLED_KEYS))}",
        )
    pool = reader.string(table["pool"], f"{where}.pool")
    site = reader.string(table["site"], f"{where}.site") if "site" in table else None
    movable = reader.boolean(table["movable"], f"{where}.movable") if "movable" in table else False
    home = True
    if "return_home" in table:
        if not movable:
            raise reader.fail(f"{where}.return_home", "only applies to a movable actor")
        home = reader.boolean(table["return_home"], f"{where}.return_home")
    return pool, PoolActor(path, start, site, movable, home)


def add_pools(
    reader: TomlReader,
    value: object,
    pooled: Pooled,
    sites: tuple[SiteSpec, ...],
    root: SupervisorSpec,
) -> tuple[SupervisorSpec, tuple[PoolSpec, ...]]:
    """The ``[pools]`` specs, each with its actors, and the root with their controllers."""
    tables = reader.table(value, "pools") if value is not None else {}
    specs = []
    for name, table in tables.items():
        where = f"pools.{name}"
        declared = pooled.get(name, [])
        spec = PoolSpec.from_mapping(
            name, reader.table(table, where), where=f"{reader.source}: {where}"
        )
        if sites:
            spec.check_sites([s.name for s in sites], where=f"{reader.source}: {where}")
        domains = {s.name: s.domain for s in sites if s.name in spec.sites}
        try:
            spec = dataclasses.replace(
                spec, actors=tuple(actor for _, actor in declared), site_domains=domains
            )
        except ConfigError as exc:
            for at, actor in declared:
                if str(exc).startswith(f"{actor.id}.site"):
                    raise reader.fail(f"{at}.site", str(exc).partition(": ")[2]) from None
            raise reader.fail(where, str(exc)) from None
        _check_checkpoint_site(reader, spec, declared, where)
        specs.append(spec)
    for name in pooled.keys() - tables.keys():
        raise reader.fail(
            f"{pooled[name][0][0]}.pool",
            f"{name!r} is not a declared pool ({', '.join(tables) or 'none'}): "
            f"declare [pools.{name}]",
        )
    if not specs:
        return root, ()
    if root.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
        raise reader.fail("pools", "the root is simple_one_for_one: it has no room for them")
    children = [*root.children, *(pool_child(spec) for spec in specs)]
    return dataclasses.replace(root, children=children), tuple(specs)


def _check_checkpoint_site(
    reader: TomlReader, spec: PoolSpec, declared: list[tuple[str, PoolActor]], where: str
) -> None:
    """A movable actor between sites with their own JetStream domains needs a checkpoint site."""
    if spec.checkpoint_site is not None or len(set(spec.site_domains.values())) < 2:
        return
    for at, actor in declared:
        if actor.movable:
            raise reader.fail(
                f"{where}.checkpoint_site",
                f"missing: movable actor {actor.id!r} ({at}) would start without its state at "
                "another site (each site keeps checkpoints in its own JetStream domain): name "
                "the site whose JetStream keeps the movable actors' checkpoints (usually the hub)",
            )
