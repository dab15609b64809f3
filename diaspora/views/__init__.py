"""Views: joins of several streams into groups by key, published as items of references.

A :class:`View` declares its sources, how their items relate (by key, K of
one source with 1 of another, a time window) and what to do with a group
still incomplete after ``within`` seconds. It runs as an actor
(:func:`view_runtime`, or a ``[views.<name>]`` table of a workflow file):
each complete group is published once on ``output`` as an item made of
``(stream, seq)`` references, which :meth:`ViewItem.load` resolves with
JetStream direct gets. See ``docs/views.md``.

>>> view = View("pairs", output="pairs", key=("id",), within=30.0,
...             sources={"a": Source("a"), "b": Source("b")})
>>> view.subjects
('a', 'b')
"""

from __future__ import annotations

from diaspora.views._actor import (
    ViewActor,
    ViewStage,
    copies_subject,
    group_msg_id,
    stage_factory,
    view_runtime,
)
from diaspora.views._groups import Group, Grouper
from diaspora.views._item import Loaded, Ref, ViewItem
from diaspora.views._keeper import PinKeeper, group_id
from diaspora.views._pins import PinnedMessage, Pins, pin_bucket, read_pin
from diaspora.views._snapshots import (
    Capture,
    SnapshotState,
    ViewSnapshots,
    liveness_stages,
    restore_snapshot,
    snapshot_versions,
    view_at,
)
from diaspora.views._spec import (
    OnIncomplete,
    OnStale,
    SnapshotPolicy,
    Source,
    View,
    parse_size,
    view_from_table,
)

__all__ = [
    "Capture",
    "Group",
    "Grouper",
    "Loaded",
    "OnIncomplete",
    "OnStale",
    "PinKeeper",
    "PinnedMessage",
    "Pins",
    "Ref",
    "SnapshotPolicy",
    "SnapshotState",
    "Source",
    "View",
    "ViewActor",
    "ViewItem",
    "ViewSnapshots",
    "ViewStage",
    "copies_subject",
    "group_id",
    "group_msg_id",
    "liveness_stages",
    "parse_size",
    "pin_bucket",
    "read_pin",
    "restore_snapshot",
    "snapshot_versions",
    "stage_factory",
    "view_at",
    "view_from_table",
    "view_runtime",
]
