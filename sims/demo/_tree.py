"""A workflow file's tree with some actors' ``args`` changed (the demo's ``--small``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from diaspora.compute._pools import PoolSpec
from diaspora.errors import ConfigError
from diaspora.supervision import SupervisorSpec
from diaspora.workflow import ActorStart, ProcessStart, TreeConfig
from diaspora.workflow._poolchild import PoolStart

__all__ = ["args_of", "override_args", "scan_of"]


def override_args(config: TreeConfig, overrides: Mapping[str, Mapping[str, Any]]) -> TreeConfig:
    """``config`` with ``overrides[actor_id]`` merged into that actor's ``args`` (actors of the
    tree, in process nodes, and of pools), and ``overrides[subject]`` into the
    ``reconstructor_args`` of that stream's QoS (a stand-in maker that knows the instrument);
    a key the tree has neither for is a ``ConfigError``."""
    seen: set[str] = set()
    spec = _walk(config.spec, config.name, overrides, seen)
    pools = tuple(_pool(pool, overrides, seen) for pool in config.pools)
    streams = dict(config.streams)
    for subject, decl in config.streams.items():
        if subject in overrides and decl.qos is not None and decl.qos.reconstructor is not None:
            seen.add(subject)
            args = {**decl.qos.reconstructor_args, **overrides[subject]}
            qos = dataclasses.replace(decl.qos, reconstructor_args=args)
            streams[subject] = dataclasses.replace(decl, qos=qos)
    missing = sorted(set(overrides) - seen)
    if missing:
        reconstructed = [s for s, d in config.streams.items() if d.qos and d.qos.reconstructor]
        raise ConfigError(
            f"{config.source}: no actor or reconstructed stream {', '.join(missing)} to give "
            f"demo arguments to (actors: {', '.join(config.actors())}; streams with a "
            f"reconstructor: {', '.join(reconstructed) or 'none'})"
        )
    return dataclasses.replace(config, spec=spec, pools=pools, streams=streams)


def _start(
    start: Any, path: str, overrides: Mapping[str, Mapping[str, Any]], seen: set[str]
) -> Any:
    if isinstance(start, ProcessStart):
        return dataclasses.replace(start, target=_start(start.target, path, overrides, seen))
    if isinstance(start, SupervisorSpec):
        return _walk(start, path, overrides, seen)
    if isinstance(start, PoolStart):
        return dataclasses.replace(start, spec=_pool(start.spec, overrides, seen))
    if isinstance(start, ActorStart) and path in overrides:
        seen.add(path)
        return dataclasses.replace(start, args={**start.args, **overrides[path]})
    return start


def _walk(
    spec: SupervisorSpec, path: str, overrides: Mapping[str, Mapping[str, Any]], seen: set[str]
) -> SupervisorSpec:
    children = [
        dataclasses.replace(child, start=_start(child.start, f"{path}.{child.id}", overrides, seen))
        for child in spec.children
    ]
    return dataclasses.replace(spec, children=children)


def _pool(pool: PoolSpec, overrides: Mapping[str, Mapping[str, Any]], seen: set[str]) -> PoolSpec:
    actors = tuple(
        dataclasses.replace(a, start=_start(a.start, a.id, overrides, seen)) for a in pool.actors
    )
    return dataclasses.replace(pool, actors=actors)


def _find(start: Any, path: str, target: str) -> ActorStart | None:
    if isinstance(start, ProcessStart):
        return _find(start.target, path, target)
    if isinstance(start, SupervisorSpec):
        for child in start.children:
            found = _find(child.start, f"{path}.{child.id}", target)
            if found is not None:
                return found
        return None
    if isinstance(start, PoolStart):
        for actor in start.spec.actors:
            found = _find(actor.start, actor.id, target)
            if found is not None:
                return found
        return None
    return start if isinstance(start, ActorStart) and path == target else None


def args_of(config: TreeConfig, actor: str) -> dict[str, Any]:
    """The ``args`` of ``actor`` in the tree."""
    start = _find(config.spec, config.name, actor)
    if start is None:
        raise ConfigError(
            f"{config.source}: no actor {actor} (actors: {', '.join(config.actors())})"
        )
    return dict(start.args)


def scan_of(config: TreeConfig, actor: str) -> dict[str, Any]:
    """The ``scan`` argument of ``actor`` (the instrument it simulates), ``{}`` if none."""
    return dict(args_of(config, actor).get("scan") or {})
