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
    "Group",
    "Grouper",
    "Loaded",
    "OnIncomplete",
    "OnStale",
    "Ref",
    "SnapshotPolicy",
    "Source",
    "View",
    "ViewActor",
    "ViewItem",
    "ViewStage",
    "copies_subject",
    "group_msg_id",
    "parse_size",
    "stage_factory",
    "view_from_table",
    "view_runtime",
]
