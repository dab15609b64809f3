"""Supervision trees after Erlang/OTP: specs, the supervisor, and what it supervises.

Actors join a tree with :func:`actor_child`, whole subtrees run in their own
OS process with :func:`process_child`, and :func:`load_config` reads a tree
from a TOML file.

>>> spec = SupervisorSpec([ChildSpec("sum", start=lambda: ...)], strategy=Strategy.REST_FOR_ONE)
>>> spec.strategy.value
'rest_for_one'
"""

from diaspora.clock import Clock, ManualClock, SystemClock
from diaspora.errors import ChildShutdown, NodeCrashed
from diaspora.supervision.actors import ActorStart, actor_child
from diaspora.supervision.binding import FabricBound, bind_fabric
from diaspora.supervision.config import TreeConfig, load_config, parse_config
from diaspora.supervision.context import ChildContext, current_child
from diaspora.supervision.events import EventSink, FabricEvents, fabric_events
from diaspora.supervision.node import NodeHung, ProcessNode, ProcessStart, process_child
from diaspora.supervision.runnable import Runnable
from diaspora.supervision.spec import (
    BRUTAL_KILL,
    INFINITY,
    Backoff,
    ChildSpec,
    ChildType,
    Restart,
    Shutdown,
    StartFn,
    Strategy,
    SupervisorSpec,
)
from diaspora.supervision.supervisor import ChildCounts, ChildRecord, ChildStatus, Supervisor

__all__ = [
    "BRUTAL_KILL",
    "INFINITY",
    "ActorStart",
    "Backoff",
    "ChildContext",
    "ChildCounts",
    "ChildRecord",
    "ChildShutdown",
    "ChildSpec",
    "ChildStatus",
    "ChildType",
    "Clock",
    "EventSink",
    "FabricBound",
    "FabricEvents",
    "ManualClock",
    "NodeCrashed",
    "NodeHung",
    "ProcessNode",
    "ProcessStart",
    "Restart",
    "Runnable",
    "Shutdown",
    "StartFn",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "SystemClock",
    "TreeConfig",
    "actor_child",
    "bind_fabric",
    "current_child",
    "fabric_events",
    "load_config",
    "parse_config",
    "process_child",
]
