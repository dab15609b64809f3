"""Diaspora: supervised, replayable asyncio actors on NATS JetStream.

The names most users need; everything else is importable from its layer
(``diaspora.fabric``, ``diaspora.actor``, ``diaspora.supervision``...).
"""

from diaspora.actor import Actor, ActorRuntime, Message, run_actor
from diaspora.errors import DiasporaError
from diaspora.fabric import Fabric

__all__ = ["Actor", "ActorRuntime", "DiasporaError", "Fabric", "Message", "run_actor"]
