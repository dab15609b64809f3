"""Compute: elastic keyed consumer groups and live migration (and, next, pools per site).

:class:`ScaleOutGroup` runs an actor as ``n`` keyed partitions under a
``simple_one_for_one`` supervisor and resizes the group from the measured
arrival and drain rates when a ``scale_out`` stream falls behind.
:func:`migrate` moves a running actor (state in a :class:`MigratableState`,
the :class:`Migratable` stage on each worker that may host it) to another
worker with pre-copy rounds (:mod:`diaspora.compute._migrate`).
"""

from diaspora.compute._migrate import MigrationPolicy, migrate, migrate_subject
from diaspora.compute._migrate_stage import Migratable, MigrationStage
from diaspora.compute._migrate_state import MigratableState
from diaspora.compute._scaleout import Replica, ScaleOutGroup

__all__ = [
    "Migratable",
    "MigratableState",
    "MigrationPolicy",
    "MigrationStage",
    "Replica",
    "ScaleOutGroup",
    "migrate",
    "migrate_subject",
]
