"""Supervision trees after Erlang/OTP: specs, the supervisor, and what it supervises.

>>> spec = SupervisorSpec([ChildSpec("sum", start=lambda: ...)], strategy=Strategy.REST_FOR_ONE)
>>> spec.strategy.value
'rest_for_one'
"""

from diaspora.errors import ChildShutdown
from diaspora.supervision.clock import Clock, ManualClock, SystemClock
from diaspora.supervision.context import ChildContext, current_child
from diaspora.supervision.events import EventSink, FabricEvents, fabric_events
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
    "FabricEvents",
    "ManualClock",
    "Restart",
    "Runnable",
    "Shutdown",
    "StartFn",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "SystemClock",
    "current_child",
    "fabric_events",
]
