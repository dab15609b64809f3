"""Diaspora: supervised, replayable asyncio actors on NATS JetStream.

The names most users need; everything else is importable from its layer
(``diaspora.fabric``, ``diaspora.actor``, ``diaspora.supervision``,
``diaspora.streams``, ``diaspora.testing``).
"""

from diaspora.actor import Actor, ActorRuntime, Message, run_actor
from diaspora.errors import DiasporaError
from diaspora.fabric import Fabric
from diaspora.supervision import (
    ChildSpec,
    Restart,
    Strategy,
    Supervisor,
    SupervisorSpec,
    actor_child,
    load_config,
)

__all__ = [
    "Actor",
    "ActorRuntime",
    "ChildSpec",
    "DiasporaError",
    "Fabric",
    "Message",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "actor_child",
    "load_config",
    "run_actor",
]
