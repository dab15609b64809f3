"""Compute: pools of workers per site, and elastic keyed consumer groups.

:class:`PoolSpec` declares a pool (workers per site, a provider, restart
intensity per site, its actors); :class:`PoolController` keeps it at its
minimum through a :class:`Provider`. :class:`ScaleOutGroup` runs an actor as
``n`` keyed partitions under a ``simple_one_for_one`` supervisor and resizes
the group from the measured arrival and drain rates when a ``scale_out``
stream falls behind.
"""

from diaspora.compute._poolcontrol import PoolController
from diaspora.compute._pools import AtPath, PoolActor, PoolSpec, ProviderKind, SiteQuota
from diaspora.compute._provider import Provider, WorkerInfo, WorkerOrder, WorkerState
from diaspora.compute._scaleout import Replica, ScaleOutGroup

__all__ = [
    "AtPath",
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
]
