"""Supervision after Erlang/OTP: specs, the supervisor, and the Runnable contract it supervises.

The pure kernel: it knows nothing of NATS or actors. Actors and process
nodes join a tree through :mod:`diaspora.workflow` (``actor_child``,
``process_child``, ``load_config``).

>>> spec = SupervisorSpec([ChildSpec("sum", start=lambda: ...)], strategy=Strategy.REST_FOR_ONE)
>>> spec.strategy.value
'rest_for_one'
"""

from diaspora.backoff import Backoff
from diaspora.clock import Clock, ManualClock, SystemClock
from diaspora.errors import ChildIgnore, ChildShutdown
from diaspora.supervision._binding import (
    FabricBound,
    StageBound,
    add_stages,
    bind_fabric,
    bind_start,
)
from diaspora.supervision._context import ChildContext, child_events, current_child
from diaspora.supervision._records import ChildCounts, ChildRecord, ChildStatus
from diaspora.supervision._runnable import Runnable, Stopper, run_until
from diaspora.supervision._spec import (
    BRUTAL_KILL,
    IGNORE,
    INFINITY,
    AutoShutdown,
    ChildSpec,
    ChildType,
    Ignore,
    Restart,
    Shutdown,
    StartFn,
    Strategy,
    SupervisorSpec,
)
from diaspora.supervision._supervisor import Supervisor

__all__ = [
    "BRUTAL_KILL",
    "IGNORE",
    "INFINITY",
    "AutoShutdown",
    "Backoff",
    "ChildContext",
    "ChildCounts",
    "ChildIgnore",
    "ChildRecord",
    "ChildShutdown",
    "ChildSpec",
    "ChildStatus",
    "ChildType",
    "Clock",
    "FabricBound",
    "Ignore",
    "ManualClock",
    "Restart",
    "Runnable",
    "Shutdown",
    "StageBound",
    "StartFn",
    "Stopper",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "SystemClock",
    "add_stages",
    "bind_fabric",
    "bind_start",
    "child_events",
    "current_child",
    "run_until",
]
