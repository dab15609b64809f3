"""Diaspora: supervised, replayable asyncio actors on NATS JetStream.

The names most users need are here; everything else is importable from its
layer (``diaspora.fabric``, ``diaspora.stage``, ``diaspora.streams``,
``diaspora.actor``, ``diaspora.views``, ``diaspora.supervision``, ``diaspora.compute``,
``diaspora.workflow``, ``diaspora.testing``; events in ``diaspora.events``,
errors in ``diaspora.errors``). Reading the code: start at ARCHITECTURE.md.

The root imports lazily: ``import diaspora`` loads nothing until a name is
used, so a process node or a tool pays only for what it touches.

>>> import diaspora
>>> diaspora.Actor.__module__
'diaspora.actor._actor'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diaspora._lazy import lazy_exports

if TYPE_CHECKING:
    from diaspora.actor import Actor, ActorRuntime, run_actor
    from diaspora.errors import (
        ActorCrashed,
        CheckpointError,
        ConfigError,
        DecodeError,
        DiasporaError,
        FabricUnavailable,
        Stale,
    )
    from diaspora.fabric import EmbeddedServer, Fabric
    from diaspora.message import Message
    from diaspora.stage import Stage
    from diaspora.streams import HistorySpec, OverloadPolicy, QosSpec, declare_qos
    from diaspora.supervision import (
        Backoff,
        ChildSpec,
        Restart,
        Strategy,
        Supervisor,
        SupervisorSpec,
        current_child,
    )
    from diaspora.views import Source, View, ViewItem
    from diaspora.workflow import actor_child, load_config, parse_config, process_child

#: Each root name and the module that defines it.
_HOMES: dict[str, str] = {
    "Actor": "diaspora.actor",
    "ActorRuntime": "diaspora.actor",
    "run_actor": "diaspora.actor",
    "Message": "diaspora.message",
    "Stage": "diaspora.stage",
    "Fabric": "diaspora.fabric",
    "EmbeddedServer": "diaspora.fabric",
    "HistorySpec": "diaspora.streams",
    "OverloadPolicy": "diaspora.streams",
    "QosSpec": "diaspora.streams",
    "declare_qos": "diaspora.streams",
    "Backoff": "diaspora.supervision",
    "ChildSpec": "diaspora.supervision",
    "Restart": "diaspora.supervision",
    "Strategy": "diaspora.supervision",
    "Supervisor": "diaspora.supervision",
    "SupervisorSpec": "diaspora.supervision",
    "current_child": "diaspora.supervision",
    "actor_child": "diaspora.workflow",
    "load_config": "diaspora.workflow",
    "parse_config": "diaspora.workflow",
    "process_child": "diaspora.workflow",
    "ActorCrashed": "diaspora.errors",
    "CheckpointError": "diaspora.errors",
    "ConfigError": "diaspora.errors",
    "DecodeError": "diaspora.errors",
    "DiasporaError": "diaspora.errors",
    "FabricUnavailable": "diaspora.errors",
    "Stale": "diaspora.errors",
    "Source": "diaspora.views",
    "View": "diaspora.views",
    "ViewItem": "diaspora.views",
}

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorRuntime",
    "Backoff",
    "CheckpointError",
    "ChildSpec",
    "ConfigError",
    "DecodeError",
    "DiasporaError",
    "EmbeddedServer",
    "Fabric",
    "FabricUnavailable",
    "HistorySpec",
    "Message",
    "OverloadPolicy",
    "QosSpec",
    "Restart",
    "Source",
    "Stage",
    "Stale",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "View",
    "ViewItem",
    "actor_child",
    "current_child",
    "declare_qos",
    "load_config",
    "parse_config",
    "process_child",
    "run_actor",
]


__getattr__, __dir__ = lazy_exports("diaspora", _HOMES, __all__, globals())
