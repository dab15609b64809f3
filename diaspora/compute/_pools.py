"""Pools, declared: a set of workers (OS processes hosting actors) with a minimum per site.

A :class:`PoolSpec` says which sites a pool's workers run at and how many
(:class:`SiteQuota`: at least ``min``, at most ``max`` per site; at least
``total_min`` over all sites), which provider acquires them (``process``:
process nodes; ``parsl``: Parsl blocks), how often a site may lose workers
before the pool stops restarting them there (``intensity`` in ``period``
seconds, as a supervisor's), and which actors run on them
(:class:`PoolActor`: an actor's id, its start function, its home site and
whether it may move to another site when its own is lost).

The same checker serves Python and workflow files: :meth:`PoolSpec.from_mapping`
turns a ``[pools.<name>]`` table into the spec, and the spec checks its own
values, raising :class:`~diaspora.errors.ConfigError` naming the field
(``pools.recon.sites.edge.max``).

>>> spec = PoolSpec.from_mapping("recon", {
...     "sites": {"edge": {"min": 1, "max": 2}, "hpc": {"min": 2, "max": 8}},
...     "total_min": 3, "provider": "process"})
>>> spec.sites["hpc"], spec.provider.value, spec.wants({"edge", "hpc"})
(SiteQuota(min=2, max=8), 'process', {'edge': 1, 'hpc': 2})
>>> PoolSpec.from_mapping("recon", {"sites": {"edge": {"min": 3, "max": 2}}})
Traceback (most recent call last):
...
diaspora.errors.ConfigError: pools.recon.sites.edge.max: 2 is below min = 3
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from diaspora.compute._anchor import CheckpointAt
from diaspora.errors import ConfigError
from diaspora.supervision._binding import StageBound, bind_start
from diaspora.supervision._context import _CURRENT, ChildContext, current_child
from diaspora.supervision._spec import StartFn, SupervisorSpec, check_id

__all__ = ["AtPath", "PoolActor", "PoolSpec", "ProviderKind", "SiteQuota"]

_POOL_KEYS: Final = frozenset(
    {
        "sites",
        "total_min",
        "provider",
        "intensity",
        "period",
        "retry_after",
        "parsl",
        "checkpoint_site",
        "actors_per_worker",
    }
)
#: What ``parsl.<site>.provider`` may name (Parsl's LocalProvider, SlurmProvider, PBSProProvider).
PARSL_PROVIDERS: Final = ("local", "slurm", "pbspro")
_QUOTA_KEYS: Final = frozenset({"min", "max"})


class ProviderKind(StrEnum):
    """Which provider acquires a pool's workers."""

    PROCESS = "process"  #: process nodes, one OS process per worker (the default)
    PARSL = "parsl"  #: Parsl blocks (LocalProvider, Slurm, PBS...: ``pip install diaspora[pools]``)


def _count(value: object, where: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {value!r} must be an integer >= {minimum}")
    return value


def _seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {value!r} must be a number of seconds")
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{where}: {value!r} must be finite and > 0 seconds")
    return float(value)


@dataclass(frozen=True, slots=True)
class SiteQuota:
    """How many workers a pool keeps at one site: at least ``min``, at most ``max``."""

    min: int = 0
    max: int = 1

    def check(self, where: str) -> None:
        _count(self.min, f"{where}.min")
        _count(self.max, f"{where}.max", minimum=1)
        if self.max < self.min:
            raise ConfigError(f"{where}.max: {self.max} is below min = {self.min}")


@dataclass(frozen=True, slots=True)
class AtPath:
    """A start function run as if it were the child at ``path`` (an actor's id stays its own).

    A pool's worker hosts actors from anywhere in the tree under one
    supervisor: each is started with the :class:`ChildContext` of its own path,
    so :class:`~diaspora.workflow.ActorStart` names the runtime ``path`` and it
    finds its checkpoint again on whichever worker and site it runs.
    """

    path: str
    start: StartFn

    def with_fabric(self, fabric: Any) -> AtPath:
        bound = bind_start(self.start, fabric)
        assert not isinstance(bound, SupervisorSpec)  # a start function stays one
        return dataclasses.replace(self, start=bound)

    def with_stages(self, stages: tuple[Any, ...]) -> AtPath:
        start = self.start
        if isinstance(start, StageBound):
            start = start.with_stages(stages)
        return dataclasses.replace(self, start=start)

    def __call__(self, *args: Any) -> Any:
        here = current_child()
        supervisor, _, child = self.path.rpartition(".")
        token = _CURRENT.set(
            ChildContext(supervisor or here.supervisor, child, here.incarnation, here.args)
        )
        try:
            return self.start(*args)
        finally:
            _CURRENT.reset(token)


@dataclass(frozen=True, slots=True)
class PoolActor:
    """An actor that runs on a pool's workers.

    ``id`` is its id in the tree (``root.solve``: its checkpoint's name),
    ``start`` its start function (:class:`~diaspora.workflow.ActorStart`),
    ``site`` its home site (``None``: the pool's first site). ``movable``: when
    its site is lost, it may run at another site of the pool (its inputs and
    checkpoint must be reachable from there: see ``PoolSpec.checkpoint_site``);
    a pinned actor waits for its site. ``return_home``: a moved actor goes back
    to its home site once that is up again (a handoff through the checkpoint's
    fence); ``False``: it stays where it went.
    """

    id: str
    start: StartFn
    site: str | None = None
    movable: bool = False
    return_home: bool = True

    def __post_init__(self) -> None:
        for part in self.id.split("."):
            check_id(part, f"pool actor {self.id!r}")
        if not callable(self.start):
            raise ConfigError(f"pool actor {self.id!r}: start={self.start!r} is not callable")


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A pool: its sites' quotas, its provider, its restart intensity and its actors.

    ``intensity`` worker exits in ``period`` seconds at one site are allowed;
    one more and the site is *degraded*: no more workers start there for
    ``retry_after`` seconds (``None``: until the pool restarts) and its
    movable actors go elsewhere. ``check_interval`` is how often the
    controller looks at its workers and sites.
    """

    name: str
    sites: Mapping[str, SiteQuota]
    total_min: int = 0
    provider: ProviderKind = ProviderKind.PROCESS
    actors: tuple[PoolActor, ...] = ()
    intensity: int = 3
    period: float = 30.0
    retry_after: float | None = 60.0
    #: the site whose JetStream keeps the checkpoints of the movable actors, whichever site
    #: they run at (usually the hub), so a moved actor resumes from its state
    #: (``None``: each actor's checkpoint is at the site it runs at)
    checkpoint_site: str | None = None
    #: a running worker hosting fewer actors than this takes an actor moving to its site
    #: (a new worker starts only when none has room)
    actors_per_worker: int = 4
    #: each site's JetStream domain (a workflow file fills it from ``[sites]``; default: its name)
    site_domains: Mapping[str, str] = field(default_factory=dict)
    #: ``provider = "parsl"``: each site's Parsl provider and its keyword arguments
    #: (``{"hpc": {"provider": "slurm", "partition": "debug", ...}}``; default: local)
    parsl: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    check_interval: float = field(default=0.1, compare=False)

    def __post_init__(self) -> None:
        where = f"pools.{self.name}"
        check_id(self.name, where)
        if not isinstance(self.sites, Mapping) or not self.sites:
            raise ConfigError(
                f"{where}.sites: name at least one site (sites.<name> = {{min, max}})"
            )
        for site, quota in self.sites.items():
            check_id(site, f"{where}.sites")
            if not isinstance(quota, SiteQuota):
                raise ConfigError(f"{where}.sites.{site}: {quota!r} is not a SiteQuota")
            quota.check(f"{where}.sites.{site}")
        object.__setattr__(self, "sites", dict(self.sites))
        _count(self.total_min, f"{where}.total_min")
        room = sum(q.max for q in self.sites.values())
        if self.total_min > room:
            raise ConfigError(
                f"{where}.total_min: {self.total_min} is more than the sites' max allow ({room})"
            )
        object.__setattr__(self, "provider", ProviderKind(self.provider))
        _count(self.intensity, f"{where}.intensity")
        _count(self.actors_per_worker, f"{where}.actors_per_worker", minimum=1)
        _seconds(self.period, f"{where}.period")
        if self.retry_after is not None:
            _seconds(self.retry_after, f"{where}.retry_after")
        seen: set[str] = set()
        for actor in self.actors:
            if actor.id in seen:
                raise ConfigError(f"{where}: actor {actor.id!r} is in the pool twice")
            seen.add(actor.id)
            if actor.site is not None and actor.site not in self.sites:
                raise ConfigError(
                    f"{actor.id}.site: {actor.site!r} is not a site of pool {self.name!r} "
                    f"(its sites: {', '.join(self.sites)})"
                )
        object.__setattr__(self, "actors", tuple(self.actors))
        if self.checkpoint_site is not None and self.checkpoint_site not in self.sites:
            raise ConfigError(
                f"{where}.checkpoint_site: {self.checkpoint_site!r} is not a site of the pool "
                f"(its sites: {', '.join(self.sites)})"
            )
        for actor in self.actors:
            if self.checkpoint_site and actor.movable and not isinstance(actor.start, StageBound):
                raise ConfigError(
                    f"{actor.id}: a movable actor of a pool with checkpoint_site needs a start "
                    f"function that takes stages (ActorStart), not {actor.start!r}"
                )
        object.__setattr__(self, "site_domains", dict(self.site_domains))
        self._check_parsl(where)

    def _check_parsl(self, where: str) -> None:
        if self.parsl and self.provider is not ProviderKind.PARSL:
            raise ConfigError(f'{where}.parsl: only applies with provider = "parsl"')
        for site, options in self.parsl.items():
            at = f"{where}.parsl.{site}"
            if site not in self.sites:
                raise ConfigError(f"{at}: {site!r} is not a site of the pool")
            if not isinstance(options, Mapping):
                raise ConfigError(f"{at}: expected a table of Parsl provider options")
            kind = options.get("provider", "local")
            if kind not in PARSL_PROVIDERS:
                raise ConfigError(
                    f"{at}.provider: {kind!r} is not one of {', '.join(PARSL_PROVIDERS)}"
                )
        object.__setattr__(self, "parsl", {s: dict(o) for s, o in self.parsl.items()})

    @classmethod
    def from_mapping(
        cls, name: str, table: Mapping[str, Any], *, where: str | None = None
    ) -> PoolSpec:
        """The spec of a ``[pools.<name>]`` table (``where`` names it in errors)."""
        at = where if where is not None else f"pools.{name}"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{at}: expected a table, got {table!r}")
        unknown = sorted(set(table) - _POOL_KEYS)
        if unknown:
            raise ConfigError(
                f"{at}.{unknown[0]}: unknown key; a pool takes {', '.join(sorted(_POOL_KEYS))}"
            )
        if "sites" not in table:
            raise ConfigError(f"{at}.sites: missing (sites.<name> = {{ min = 1, max = 2 }})")
        raw_sites = table["sites"]
        if not isinstance(raw_sites, Mapping):
            raise ConfigError(f"{at}.sites: expected a table of sites, got {raw_sites!r}")
        sites = {}
        for site, quota in raw_sites.items():
            if not isinstance(quota, Mapping):
                raise ConfigError(f"{at}.sites.{site}: expected {{ min = .., max = .. }}")
            bad = sorted(set(quota) - _QUOTA_KEYS)
            if bad:
                raise ConfigError(f"{at}.sites.{site}.{bad[0]}: unknown key; use min and max")
            low = _count(quota.get("min", 0), f"{at}.sites.{site}.min")
            high = quota.get("max", max(low, 1))
            sites[site] = SiteQuota(low, high)
        provider = table.get("provider", "process")
        try:
            kind = ProviderKind(provider)
        except ValueError:
            raise ConfigError(
                f"{at}.provider: {provider!r} is not one of "
                f"{', '.join(k.value for k in ProviderKind)}"
            ) from None
        flags = {k: table[k] for k in ("total_min", "intensity", "period") if k in table}
        for key in ("retry_after", "parsl", "checkpoint_site", "actors_per_worker"):
            if key in table:
                flags[key] = table[key]
        try:
            return cls(name, sites, provider=kind, **flags)
        except ConfigError as exc:
            message = str(exc)
            if where is not None and message.startswith(f"pools.{name}"):
                message = at + message.removeprefix(f"pools.{name}")
            raise ConfigError(message) from None

    def check_sites(self, known: Collection[str], *, where: str | None = None) -> None:
        """Raise :class:`ConfigError` unless every site of the pool is one of ``known``."""
        at = where if where is not None else f"pools.{self.name}"
        for site in self.sites:
            if site not in known:
                raise ConfigError(
                    f"{at}.sites.{site}: no such site in [sites] (declared: "
                    f"{', '.join(known) or 'none'}): declare [sites.{site}] or fix the name"
                )

    def domain(self, site: str) -> str:
        """The JetStream domain of ``site`` (its name unless ``site_domains`` says otherwise)."""
        return self.site_domains.get(site, site)

    def hosted(self, actor: PoolActor) -> PoolActor:
        """``actor`` as a worker runs it: a movable one keeps its checkpoint at the
        ``checkpoint_site`` (the :class:`~diaspora.compute.CheckpointAt` stage)."""
        if self.checkpoint_site is None or not actor.movable:
            return actor
        assert isinstance(actor.start, StageBound)  # checked in __post_init__
        stage = CheckpointAt(self.domain(self.checkpoint_site))
        return dataclasses.replace(actor, start=actor.start.with_stages((stage,)))

    def home(self, actor: PoolActor) -> str:
        """Where ``actor`` runs when every site is up: its ``site``, else the pool's first."""
        return actor.site if actor.site is not None else next(iter(self.sites))

    def wants(self, up: Collection[str]) -> dict[str, int]:
        """Workers wanted at each site in ``up``: its min, plus ``total_min``'s remainder
        spread over the up sites (declared order, one at a time, within each max)."""
        wants = {s: q.min for s, q in self.sites.items() if s in up}
        missing = self.total_min - sum(wants.values())
        while missing > 0:
            grown = False
            for site in wants:
                if missing > 0 and wants[site] < self.sites[site].max:
                    wants[site] += 1
                    missing -= 1
                    grown = True
            if not grown:
                break
        return wants
