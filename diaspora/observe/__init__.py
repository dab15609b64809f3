"""Seeing a running workflow: its events read back, folded into a model, and shown.

Read-only, from any machine that reaches the fabric. :func:`read_events`
replays the events stream and follows it (:class:`EventFilter` narrows it);
:class:`WorkflowModel` folds events into the supervision tree (a row per
actor: state, process, incarnation, restarts, rates, lag, policy, last
error), the sites and their links, the timeline of faults and recoveries,
and the alerts; :class:`Watcher` keeps a model live from a fabric. The
views built on them are ``diaspora events``, ``diaspora top`` and
``diaspora dashboard`` (the ``observe`` extra); see docs/observe.md.
"""

from diaspora.observe._actors import ActorRow, Actors, Series
from diaspora.observe._incidents import Incident, Incidents
from diaspora.observe._model import WorkflowModel
from diaspora.observe._progress import Progress
from diaspora.observe._reader import (
    EventFilter,
    Observed,
    actor_of,
    category_of,
    decode_observed,
    kind_of,
    read_events,
)
from diaspora.observe._sites import SiteRow, Sites, parse_rtt
from diaspora.observe._watch import Watcher

__all__ = [
    "ActorRow",
    "Actors",
    "EventFilter",
    "Incident",
    "Incidents",
    "Observed",
    "Progress",
    "Series",
    "SiteRow",
    "Sites",
    "Watcher",
    "WorkflowModel",
    "actor_of",
    "category_of",
    "decode_observed",
    "kind_of",
    "parse_rtt",
    "read_events",
]
