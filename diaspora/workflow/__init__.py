"""Workflows: actors as supervised children, process nodes, and workflow files.

The layer on top of the actor runtime and the supervision kernel: it turns
an actor into a child spec (:func:`actor_child`), runs a subtree in its own
OS process (:func:`process_child`), and reads a whole workflow from a TOML
file (:func:`load_config`), the file ``diaspora run`` runs.

>>> from diaspora import Actor, Message
>>> from diaspora.supervision import SupervisorSpec
>>> class Echo(Actor):
...     inputs = ("in",)
...     async def handle(self, msg: Message) -> None:
...         await self.emit("out", msg.data)
>>> spec = SupervisorSpec([actor_child("echo", Echo)], intensity=3)
>>> spec.children[0].id
'echo'
"""

from diaspora.errors import NodeCrashed, NodeHung
from diaspora.workflow._children import ActorStart, actor_child, check_actor_args
from diaspora.workflow._config import TreeConfig, load_config, parse_config
from diaspora.workflow._node import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_START_TIMEOUT,
    HOST_MODULE,
    ProcessNode,
    ProcessStart,
    process_child,
)

__all__ = [
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "DEFAULT_START_TIMEOUT",
    "HOST_MODULE",
    "ActorStart",
    "NodeCrashed",
    "NodeHung",
    "ProcessNode",
    "ProcessStart",
    "TreeConfig",
    "actor_child",
    "check_actor_args",
    "load_config",
    "parse_config",
    "process_child",
]
