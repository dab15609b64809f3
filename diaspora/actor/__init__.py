"""Actors: the user's class, its runtime, mailbox and checkpoints."""

from diaspora.actor.actor import Actor
from diaspora.actor.checkpoint import Checkpoint, CheckpointSlot
from diaspora.actor.message import Message
from diaspora.actor.runtime import ActorRuntime, HandlerHung, required_window, run_actor

__all__ = [
    "Actor",
    "ActorRuntime",
    "Checkpoint",
    "CheckpointSlot",
    "HandlerHung",
    "Message",
    "required_window",
    "run_actor",
]
