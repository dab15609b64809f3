"""Actors as children of a supervisor.

:func:`actor_child` makes the :class:`~diaspora.supervision.ChildSpec` of an
actor: every (re)start makes a fresh :class:`~diaspora.actor.ActorRuntime`
whose id is the child's path in the tree (``root.sum``), so a restarted actor
finds its checkpoint again and resumes from it.

>>> from diaspora import Actor, Message
>>> from diaspora.supervision import SupervisorSpec
>>> class Echo(Actor):
...     inputs = ("in",)
...     async def handle(self, msg: Message) -> None:
...         await self.emit("out", msg.data)
>>> spec = SupervisorSpec([actor_child("echo", Echo, args={})], intensity=3)
>>> start = spec.children[0].start
>>> start.actor.__name__, start.fabric is None     # unbound: bind_fabric() or pass fabric=
('Echo', True)
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diaspora.actor import Actor, ActorRuntime, OnPoison, PoisonPolicy
from diaspora.errors import ConfigError
from diaspora.fabric._naming import check_input
from diaspora.stage import StageFactory
from diaspora.storage import StorageSpec
from diaspora.supervision._context import child_events, current_child
from diaspora.supervision._spec import ChildSpec, Restart, Shutdown
from diaspora.workflow._node import (
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_START_TIMEOUT,
    process_child,
)

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["ActorStart", "actor_child", "check_actor_args"]

ActorFactory = type[Actor] | Callable[..., Actor]


@dataclass(frozen=True, slots=True)
class ActorStart:
    """The start function of an actor child: ``ActorStart(...)()`` makes its runtime.

    Called inside a supervisor, it returns ``ActorRuntime(actor, fabric,
    id=current_child().path, args=args, inputs=inputs)``. Under
    ``simple_one_for_one``, ``start_child({"scale": 3})`` merges the mapping
    into ``args``. ``fabric`` may be left ``None`` and bound later with
    :func:`~diaspora.supervision.bind_fabric` (config files do this).
    """

    actor: ActorFactory
    fabric: Fabric | None = None
    args: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] | None = None
    #: extra runtime stage factories (see :mod:`diaspora.stage`), e.g. fault injection
    stages: tuple[StageFactory, ...] = ()
    #: overrides of the actor class's ``max_attempts`` / ``on_poison``
    poison: PoisonPolicy | None = None
    #: overrides the actor class's ``checkpoint_storage`` (a workflow file's setting)
    checkpoint_storage: StorageSpec | None = None

    def __post_init__(self) -> None:
        where = f"actor {getattr(self.actor, '__qualname__', self.actor)!r}"
        if isinstance(self.actor, type):
            if not issubclass(self.actor, Actor):
                raise ConfigError(f"{where}: {self.actor.__qualname__} is not a diaspora Actor")
        elif not callable(self.actor):
            raise ConfigError(f"{where}: not an Actor subclass nor a factory returning an Actor")
        if not isinstance(self.args, Mapping):
            raise ConfigError(f"{where}: args={self.args!r} is not a mapping of keyword arguments")
        object.__setattr__(self, "args", dict(self.args))
        if self.inputs is not None:
            if isinstance(self.inputs, str):
                raise ConfigError(f"{where}: inputs must be a list of subjects, not a string")
            inputs = tuple(check_input(s, where=f"{where}: inputs") for s in self.inputs)
            object.__setattr__(self, "inputs", inputs)

    def with_fabric(self, fabric: Fabric | None) -> ActorStart:
        """The same start function on ``fabric``."""
        return dataclasses.replace(self, fabric=fabric)

    def with_stages(self, stages: tuple[StageFactory, ...]) -> ActorStart:
        """The same start function, its runtime running ``stages`` too."""
        return dataclasses.replace(self, stages=(*self.stages, *stages))

    def __call__(self, *overrides: Mapping[str, Any]) -> ActorRuntime:
        context = current_child()
        if self.fabric is None:
            raise ConfigError(
                f"actor child {context.path!r} has no fabric: pass fabric= to actor_child(), "
                "or bind_fabric(spec, fabric) before running the tree"
            )
        args = dict(self.args)
        for extra in overrides:
            if not isinstance(extra, Mapping):
                raise TypeError(
                    f"actor child {context.path!r}: start_child arguments must be mappings "
                    f"merged into the actor's args, got {extra!r}"
                )
            args.update(extra)
        factory = self.actor
        if self.checkpoint_storage is not None:
            factory = _StoringCheckpoints(self.actor, self.checkpoint_storage)
        return ActorRuntime(
            factory,
            self.fabric,
            id=context.path,
            args=args,
            inputs=self.inputs,
            stages=self.stages,
            poison=self.poison,
            events=child_events(self.fabric),
        )


@dataclass(frozen=True, slots=True)
class _StoringCheckpoints:
    """An actor factory whose actors keep large checkpoints in ``spec`` (resilient storage)."""

    factory: ActorFactory
    spec: StorageSpec

    def __call__(self, **args: Any) -> Actor:
        actor = self.factory(**args)
        if isinstance(actor, Actor):
            actor.checkpoint_storage = self.spec  # type: ignore[misc]  # this instance only
        return actor


#: the keys of an actor child of a workflow file besides every child's (id, restart, ...)
ACTOR_KEYS = frozenset(
    {"actor", "args", "inputs", "max_attempts", "on_poison", "checkpoint_storage"}
)


def stored_checkpoints(table: Mapping[str, Any], at: str) -> StorageSpec | None:
    """An actor child's ``checkpoint_storage`` table as a spec (``None``: not set); errors
    start with ``at`` (the file and the field)."""
    if "checkpoint_storage" not in table:
        return None
    return StorageSpec.from_table(table["checkpoint_storage"], at)


def check_actor_args(actor: ActorFactory, args: Mapping[str, Any], where: str) -> None:
    """Raise :class:`ConfigError` naming ``where`` unless ``actor(**args)`` binds its arguments."""
    try:
        signature = inspect.signature(actor)
    except (TypeError, ValueError):  # no introspectable signature: leave it to the start
        return
    try:
        signature.bind(**args)
    except TypeError as exc:
        bare = signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
            return_annotation=signature.empty,
        )
        name = getattr(actor, "__qualname__", repr(actor))
        raise ConfigError(f"{where}: {name}{bare} does not accept {dict(args)!r}: {exc}") from None


def actor_child(
    id: str,
    actor: ActorFactory,
    fabric: Fabric | None = None,
    *,
    args: Mapping[str, Any] | None = None,
    inputs: Sequence[str] | None = None,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown | None = None,
    process: bool = False,
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
    start_timeout: float = DEFAULT_START_TIMEOUT,
    max_attempts: int | None = None,
    on_poison: OnPoison | str | None = None,
    standby: bool = True,
) -> ChildSpec:
    """The child spec of an actor whose id is ``<supervisor path>.<id>``.

    ``args`` are the actor's constructor keyword arguments, ``inputs``
    overrides its class's inputs, ``max_attempts`` and ``on_poison`` its
    class's (see :class:`~diaspora.actor.OnPoison`). ``process=True`` runs it in its own OS
    process (a :class:`~diaspora.supervision.ProcessNode` watched with
    ``heartbeat_timeout``, restarted in a warm standby interpreter unless
    ``standby=False``; see :func:`~diaspora.supervision.process_child`).
    """
    poison = None
    if max_attempts is not None or on_poison is not None:
        poison = PoisonPolicy(max_attempts, on_poison)
    start = ActorStart(
        actor,
        fabric,
        dict(args or {}),
        tuple(inputs) if inputs is not None else None,
        poison=poison,
    )
    if process:
        return process_child(
            id,
            start,
            fabric,
            restart=restart,
            shutdown=shutdown,
            heartbeat_timeout=heartbeat_timeout,
            start_timeout=start_timeout,
            standby=standby,
        )
    return ChildSpec(id, start, restart=restart, shutdown=shutdown)
