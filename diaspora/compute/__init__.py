"""Compute: elastic keyed consumer groups (and, next, pools per site and live migration).

:class:`ScaleOutGroup` runs an actor as ``n`` keyed partitions under a
``simple_one_for_one`` supervisor and resizes the group from the measured
arrival and drain rates when a ``scale_out`` stream falls behind.
"""

from diaspora.compute._scaleout import Replica, ScaleOutGroup

__all__ = ["Replica", "ScaleOutGroup"]
