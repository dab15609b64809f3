"""A pool as a child of the tree: :func:`pool_child` and its start function :class:`PoolStart`.

The child (``pool-<name>`` in a workflow file) runs the pool's
:class:`~diaspora.compute.PoolController` with the provider the spec names:
``process`` (:class:`~diaspora.workflow.ProcessProvider`, workers on the
fabric of their site) or ``parsl`` (:class:`~diaspora.workflow.ParslProvider`,
imported only then). Its actors are not children of any other supervisor:
the controller places them on its workers.

>>> from diaspora.compute import PoolSpec, SiteQuota
>>> spec = pool_child(PoolSpec("recon", {"hpc": SiteQuota(1, 2)}))
>>> spec.id, type(spec.start).__name__
('pool-recon', 'PoolStart')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diaspora.compute._poolcontrol import PoolController
from diaspora.compute._pools import PoolSpec, ProviderKind
from diaspora.compute._provider import Provider
from diaspora.errors import ConfigError
from diaspora.supervision._binding import StageBound
from diaspora.supervision._context import current_child
from diaspora.supervision._spec import ChildSpec, ChildType, Restart
from diaspora.workflow._node import DEFAULT_HEARTBEAT_TIMEOUT
from diaspora.workflow._poolprocess import ProcessProvider

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["PoolStart", "pool_child"]


@dataclass(frozen=True, slots=True)
class PoolStart:
    """The start function of a pool's child: ``PoolStart(spec)()`` makes its controller.

    ``fabric`` serves every site unless ``sites`` maps a site to its own
    fabric (a workflow file with ``[sites]`` binds them so).
    """

    spec: PoolSpec
    fabric: Fabric | None = None
    sites: Mapping[str, Fabric] = field(default_factory=dict)
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT

    def with_fabric(self, fabric: Fabric | None) -> PoolStart:
        return dataclasses.replace(self, fabric=fabric)

    def with_sites(self, fabrics: Mapping[str, Fabric]) -> PoolStart:
        """The same pool, each site's workers on ``fabrics[site]``."""
        return dataclasses.replace(self, sites=dict(fabrics))

    def with_stages(self, stages: tuple[Any, ...]) -> PoolStart:
        """The same pool, its actors running ``stages`` too."""
        actors = tuple(
            dataclasses.replace(a, start=a.start.with_stages(stages))
            if isinstance(a.start, StageBound)
            else a
            for a in self.spec.actors
        )
        return dataclasses.replace(self, spec=dataclasses.replace(self.spec, actors=actors))

    def fabrics(self) -> dict[str, Fabric]:
        """Each site's fabric (``ConfigError`` naming the site that has none)."""
        out = {}
        for site in self.spec.sites:
            fabric = self.sites.get(site, self.fabric)
            if fabric is None:
                raise ConfigError(
                    f"pool {self.spec.name!r}: no fabric for site {site!r}: pass fabric= to "
                    "pool_child(), or bind_fabric(spec, fabric) before running the tree"
                )
            out[site] = fabric
        return out

    def provider(self) -> Provider:
        """The provider the spec names, on the sites' fabrics."""
        fabrics = self.fabrics()
        path = current_child().path
        if self.spec.provider is ProviderKind.PARSL:
            from diaspora.workflow._parsl import ParslProvider

            blocks = {site: quota.max for site, quota in self.spec.sites.items()}
            return ParslProvider(fabrics, self.spec.parsl, path=path, blocks=blocks)
        return ProcessProvider(fabrics, path=path, heartbeat_timeout=self.heartbeat_timeout)

    def __call__(self, *args: Any) -> PoolController:
        record = self.fabric if self.fabric is not None else next(iter(self.fabrics().values()))
        return PoolController(self.spec, self.provider(), fabric=record)


def pool_child(
    spec: PoolSpec,
    fabric: Fabric | None = None,
    *,
    sites: Mapping[str, Fabric] | None = None,
    restart: Restart = Restart.PERMANENT,
) -> ChildSpec:
    """The child spec of ``spec``'s controller (id ``pool-<name>``).

    >>> from diaspora.compute import PoolActor, PoolSpec, SiteQuota
    >>> from diaspora.workflow import ActorStart
    >>> from diaspora import Actor
    >>> class Solve(Actor):
    ...     inputs = ("frames",)
    >>> spec = PoolSpec("recon", {"edge": SiteQuota(1, 2), "hpc": SiteQuota(2, 8)},
    ...     total_min=3, actors=(PoolActor("root.solve", ActorStart(Solve), "hpc", True),))
    >>> pool_child(spec).id
    'pool-recon'
    """
    start = PoolStart(spec, fabric, dict(sites or {}))
    return ChildSpec(f"pool-{spec.name}", start, restart=restart, type=ChildType.WORKER)
