"""Compute: pools of workers per site, elastic keyed consumer groups, and live migration.

:class:`PoolSpec` declares a pool (workers per site, a provider, restart
intensity per site, its actors, the site keeping its movable actors'
checkpoints: :class:`CheckpointAt`); :class:`PoolController` keeps it at its
minimum through a :class:`Provider` (raised and lowered at runtime by
:func:`scale_pool`). :class:`ScaleOutGroup` runs an actor as
``n`` keyed partitions under a ``simple_one_for_one`` supervisor and resizes
the group from the measured arrival and drain rates when a ``scale_out``
stream falls behind. :func:`migrate` moves a running actor (state in a
:class:`MigratableState`, the :class:`Migratable` stage on each worker that
may host it) to another worker with pre-copy rounds
(:mod:`diaspora.compute._migrate`).
"""

from diaspora.compute._anchor import CheckpointAt
from diaspora.compute._migrate import MigrationPolicy, migrate, migrate_subject
from diaspora.compute._migrate_stage import Migratable, MigrationStage
from diaspora.compute._migrate_state import MigratableState
from diaspora.compute._poolcontrol import PoolController
from diaspora.compute._pools import AtPath, PoolActor, PoolSpec, ProviderKind, SiteQuota
from diaspora.compute._poolscale import scale_pool, scale_subject
from diaspora.compute._provider import Provider, WorkerInfo, WorkerOrder, WorkerState
from diaspora.compute._scaleout import Replica, ScaleOutGroup

__all__ = [
    "AtPath",
    "CheckpointAt",
    "Migratable",
    "MigratableState",
    "MigrationPolicy",
    "MigrationStage",
    "PoolActor",
    "PoolController",
    "PoolSpec",
    "Provider",
    "ProviderKind",
    "Replica",
    "ScaleOutGroup",
    "SiteQuota",
    "WorkerInfo",
    "WorkerOrder",
    "WorkerState",
    "migrate",
    "migrate_subject",
    "scale_pool",
    "scale_subject",
]
