"""A validated supervision-tree file: :class:`TreeConfig` (what :func:`load_config` returns)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diaspora.clock import Clock
from diaspora.compute._pools import PoolSpec
from diaspora.errors import ConfigError
from diaspora.events import EventSink
from diaspora.fabric._auth import Auth
from diaspora.fabric._fabric import StreamLimits
from diaspora.fabric._naming import is_event_input
from diaspora.fabric._sitespec import SiteSpec
from diaspora.streams._qos import QosSpec
from diaspora.streams._registry import declare_qos
from diaspora.supervision._binding import bind_fabric, bind_start
from diaspora.supervision._spec import SupervisorSpec
from diaspora.supervision._supervisor import Supervisor
from diaspora.workflow._children import ActorStart
from diaspora.workflow._node import ProcessStart
from diaspora.workflow._poolchild import PoolStart
from diaspora.workflow._siteconfig import BridgeDecl, declared_outputs, placed_actors

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["StreamDecl", "TreeConfig"]


@dataclass(frozen=True, slots=True)
class StreamDecl:
    """A ``[streams."<subject>"]`` table: the stream's QoS and its retention limits."""

    qos: QosSpec | None = None
    limits: StreamLimits | None = None


@dataclass(frozen=True, slots=True)
class TreeConfig:
    """A validated config file: the root supervisor's name and spec, and the fabric URL.

    ``spec`` has no fabric: run it with :meth:`supervisor` (or
    ``bind_fabric(spec, fabric)``).
    """

    source: str
    name: str
    spec: SupervisorSpec
    url: tuple[str, ...] | None = None
    streams: Mapping[str, StreamDecl] = field(default_factory=dict)
    #: the ``[sites]`` (root first is not implied: file order); empty for one server
    sites: tuple[SiteSpec, ...] = ()
    #: child path (``root.ingest``) -> the site its table names (inherited below it)
    placements: Mapping[str, str] = field(default_factory=dict)
    #: The ``[fabric]`` credentials and TLS (``None``: connect without).
    auth: Auth | None = None
    #: the ``[[bridges]]``: streams copied from one site to another
    bridges: tuple[BridgeDecl, ...] = ()
    #: the ``[pools]``, each with its actors (their controllers are children of the root)
    pools: tuple[PoolSpec, ...] = ()

    def site_of(self, path: str) -> str | None:
        """The site of the child at ``path`` (``root`` for the root): its own, else its parent's."""
        while path:
            if path in self.placements:
                return self.placements[path]
            path = path.rpartition(".")[0]
        return None

    def subject_sites(self) -> dict[str, str]:
        """The site each consumed subject's stream lives on: a bridge's origin, else its
        readers' site, else the site of the actor declaring it an output, else the root's."""
        root = self.site_of(self.name)
        out: dict[str, str] = {b.subject: b.source for b in self.bridges}  # a copy's origin
        placed = list(placed_actors(self.spec, self.name, root, self.placements))
        for pool in self.pools:  # a pooled actor's streams live at its home site
            placed += [
                (a.id, pool.home(a), a.start)
                for a in pool.actors
                if isinstance(a.start, ActorStart)
            ]
        for _path, site, start in placed:
            for subject in start.inputs or tuple(getattr(start.actor, "inputs", ())):
                if site is not None and not is_event_input(subject):
                    out.setdefault(subject, site)
        for _path, site, start in placed:
            for subject in declared_outputs(start):
                if site is not None and subject in self.streams:
                    out.setdefault(subject, site)
        if root is not None:
            for subject in self.streams:
                out.setdefault(subject, root)
        return out

    def bind_sites(self, fabrics: Mapping[str, Fabric]) -> SupervisorSpec:
        """``spec`` with each actor and process node on the fabric of its site."""
        return _bind_sites(self.spec, self.name, fabrics, self.site_of)

    async def declare_streams(self, fabric: Fabric, *, site: str | None = None) -> None:
        """Ensure every stream the tree consumes, before any actor starts.

        First the ``[streams]`` with their limits and QoS (a bridged stream's QoS at
        its copy's site too: its consumers there read it), then every actor's
        inputs (the class's ``inputs``, or the file's ``inputs =``) with default
        limits, so that a plain client publishing before the actor that reads
        it has started loses nothing. Event inputs read the events stream the
        fabric itself ensures.
        """
        here = None if site is None else {s for s, at in self.subject_sites().items() if at == site}
        copied = {b.subject for b in self.bridges if b.target == site}  # read here, as a copy
        for subject, decl in self.streams.items():
            if here is not None and subject not in here:
                if subject in copied and decl.qos is not None:  # its consumers here need it
                    await declare_qos(fabric, subject, decl.qos)
                continue
            if decl.limits is not None:
                await fabric.ensure_stream(subject, decl.limits)
            else:
                await fabric.require_stream(subject)
            if decl.qos is not None:
                await declare_qos(fabric, subject, decl.qos)
        for subject in self.consumed():
            if subject not in self.streams and (here is None or subject in here):
                await fabric.require_stream(subject)

    def actors(self) -> dict[str, tuple[str, ...]]:
        """Every actor of the tree by id (``root.sum``), with the subjects it consumes."""
        out = {}
        for path, start in [*_actor_starts(self.spec, self.name), *self._pooled()]:
            inputs = start.inputs
            if inputs is None:
                inputs = tuple(getattr(start.actor, "inputs", ()))
            out[path] = inputs
        return out

    def _pooled(self) -> Iterator[tuple[str, ActorStart]]:
        for pool in self.pools:
            for actor in pool.actors:
                if isinstance(actor.start, ActorStart):
                    yield actor.id, actor.start

    def consumed(self) -> list[str]:
        """The subjects whose streams ``diaspora run`` ensures: ``[streams]`` and every
        actor's inputs that are not event patterns, in order, each once."""
        subjects = dict.fromkeys(self.streams)
        for inputs in self.actors().values():
            subjects.update((s, None) for s in inputs if not is_event_input(s))
        return list(subjects)

    def bind(self, fabric: Fabric) -> SupervisorSpec:
        """``spec`` with every actor and process node on ``fabric``."""
        return bind_fabric(self.spec, fabric)

    def supervisor(
        self, fabric: Fabric, *, on_event: EventSink | None = None, clock: Clock | None = None
    ) -> Supervisor:
        """The root :class:`Supervisor` on ``fabric``; events go to the fabric by default."""
        sink = on_event if on_event is not None else fabric
        return Supervisor(self.bind(fabric), name=self.name, on_event=sink, clock=clock)

    def summary(self) -> str:
        """One line: the root's strategy and how many supervisors, actors and process nodes."""
        counts = {"supervisor": 0, "actor": 0, "process node": 0}
        for _, kind in _walk(self.spec, self.name):
            counts[kind] += 1
        parts = [f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in counts.items()]
        return (
            f"supervisor {self.name!r} ({self.spec.strategy.value}) with "
            f"{', '.join(parts)} below it"
        )


def _walk(spec: SupervisorSpec, path: str) -> Iterator[tuple[str, str]]:
    for child in spec.children:
        child_path = f"{path}.{child.id}"
        start: object = child.start
        if isinstance(start, ProcessStart):
            yield child_path, "process node"
            start = start.target
        if isinstance(start, SupervisorSpec):
            yield child_path, "supervisor"
            yield from _walk(start, child_path)
        elif isinstance(start, ActorStart):
            yield child_path, "actor"


def _actor_starts(spec: SupervisorSpec, path: str) -> Iterator[tuple[str, ActorStart]]:
    for child in spec.children:
        child_path = f"{path}.{child.id}"
        start: object = child.start
        if isinstance(start, ProcessStart):
            start = start.target
        if isinstance(start, SupervisorSpec):
            yield from _actor_starts(start, child_path)
        elif isinstance(start, ActorStart):
            yield child_path, start


def _bind_sites(
    spec: SupervisorSpec,
    path: str,
    fabrics: Mapping[str, Fabric],
    site_of: Callable[[str], str | None],
) -> SupervisorSpec:
    children = []
    for child in spec.children:
        child_path = f"{path}.{child.id}"
        start: Any = child.start
        if isinstance(start, SupervisorSpec):
            start = _bind_sites(start, child_path, fabrics, site_of)
        elif isinstance(start, PoolStart):
            start = start.with_sites(fabrics)
        else:
            site = site_of(child_path)
            if site is None or site not in fabrics:
                raise ConfigError(f"child {child_path!r}: no fabric for its site {site!r}")
            start = bind_start(start, fabrics[site])
        children.append(dataclasses.replace(child, start=start))
    return dataclasses.replace(spec, children=children)
