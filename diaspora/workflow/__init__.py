"""Workflows: actors as supervised children, process nodes, and workflow files.

The layer on top of the actor runtime and the supervision kernel: it turns
an actor into a child spec (:func:`actor_child`), runs a subtree in its own
OS process (:func:`process_child`), runs pools of workers per site
(:func:`pool_child`, with the ``process`` and ``parsl`` providers), and reads
a whole workflow from a TOML file (:func:`load_config`), the file
``diaspora run`` runs.

Its names are imported lazily, so that a process node's child process,
which imports :mod:`diaspora.workflow._node` to read its subtree, does not
pay for the config parser or the actor runtime unless its subtree uses them.

>>> from diaspora import Actor, Message
>>> from diaspora.supervision import SupervisorSpec
>>> from diaspora.workflow import actor_child
>>> class Echo(Actor):
...     inputs = ("in",)
...     async def handle(self, msg: Message) -> None:
...         await self.emit("out", msg.data)
>>> spec = SupervisorSpec([actor_child("echo", Echo)], intensity=3)
>>> spec.children[0].id
'echo'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diaspora._lazy import lazy_exports

if TYPE_CHECKING:
    from diaspora.errors import NodeCrashed, NodeHung
    from diaspora.workflow._children import ActorStart, actor_child, check_actor_args
    from diaspora.workflow._config import load_config, parse_config
    from diaspora.workflow._monitorconfig import monitor_child
    from diaspora.workflow._node import (
        DEFAULT_HEARTBEAT_TIMEOUT,
        DEFAULT_START_TIMEOUT,
        HOST_MODULE,
        ProcessNode,
        ProcessStart,
        process_child,
    )
    from diaspora.workflow._parsl import ParslProvider
    from diaspora.workflow._poolchild import PoolStart, pool_child
    from diaspora.workflow._poolprocess import ProcessProvider
    from diaspora.workflow._tree import TreeConfig
    from diaspora.workflow._triggers import trigger_child
    from diaspora.workflow._views import view_child

#: Each name and the module that defines it.
_HOMES: dict[str, str] = {
    "DEFAULT_HEARTBEAT_TIMEOUT": "diaspora.workflow._node",
    "DEFAULT_START_TIMEOUT": "diaspora.workflow._node",
    "HOST_MODULE": "diaspora.workflow._node",
    "ActorStart": "diaspora.workflow._children",
    "NodeCrashed": "diaspora.errors",
    "NodeHung": "diaspora.errors",
    "ParslProvider": "diaspora.workflow._parsl",
    "PoolStart": "diaspora.workflow._poolchild",
    "ProcessNode": "diaspora.workflow._node",
    "ProcessProvider": "diaspora.workflow._poolprocess",
    "ProcessStart": "diaspora.workflow._node",
    "TreeConfig": "diaspora.workflow._tree",
    "actor_child": "diaspora.workflow._children",
    "check_actor_args": "diaspora.workflow._children",
    "load_config": "diaspora.workflow._config",
    "parse_config": "diaspora.workflow._config",
    "pool_child": "diaspora.workflow._poolchild",
    "process_child": "diaspora.workflow._node",
    "trigger_child": "diaspora.workflow._triggers",
    "monitor_child": "diaspora.workflow._monitorconfig",
    "view_child": "diaspora.workflow._views",
}

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_START_TIMEOUT",
    "HOST_MODULE",
    "ActorStart",
    "NodeCrashed",
    "NodeHung",
    "ParslProvider",
    "PoolStart",
    "ProcessNode",
    "ProcessProvider",
    "ProcessStart",
    "TreeConfig",
    "actor_child",
    "check_actor_args",
    "load_config",
    "monitor_child",
    "parse_config",
    "pool_child",
    "process_child",
    "trigger_child",
    "view_child",
]


__getattr__, __dir__ = lazy_exports("diaspora.workflow", _HOMES, __all__, globals())
