"""Actors: the user's class, the runtime that drives it over stages, and its checkpoints."""

from diaspora.actor._actor import Actor, OnPoison
from diaspora.actor._checkpoint import Checkpoint, CheckpointSlot, Section
from diaspora.actor._emit import required_window
from diaspora.actor._handle import partition_of
from diaspora.actor._poison import PoisonPolicy
from diaspora.actor._runtime import DEFAULT_RESTART_ALLOWANCE, ActorRuntime, run_actor
from diaspora.errors import HandlerHung
from diaspora.message import Message

__all__ = [
    "DEFAULT_RESTART_ALLOWANCE",
    "Actor",
    "ActorRuntime",
    "Checkpoint",
    "CheckpointSlot",
    "HandlerHung",
    "Message",
    "OnPoison",
    "PoisonPolicy",
    "Section",
    "partition_of",
    "required_window",
    "run_actor",
]
