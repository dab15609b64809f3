"""Stages: the pieces an actor's runtime drives every message through.

The runtime (:class:`~diaspora.actor.ActorRuntime`) is a small driver. What
happens to one input between the mailbox and ``handle`` is a chain of
inbound stages, each a :class:`Stage` whose :meth:`Stage.inbound` gets the
item and ``next`` (the rest of the chain) and calls ``next`` zero times
(filter), once (pass on, perhaps changed), or several times (replayed or
reconstructed items before the current one). What happens to an ``emit``
between the message id and the subject is the same, outbound. A stage may
also keep a named section of the checkpoint, run once per batch, and start
background tasks. The standard inbound chain::

    gap recovery (replay, then reconstruct) → partition filter → poison/DLQ
      → decode → QoS admission → handle (deadline, guard, retries in place)

and outbound: message id → history tap → output scan → flow gate → publisher.

A stage from outside the actor layer (a view, migration, a predictor, fault
injection) is passed to the runtime; the driver is never edited:

>>> class Count(Stage):
...     name = "count"
...     def __init__(self) -> None:
...         self.seen = 0
...     async def inbound(self, item: InputItem, next: Next) -> None:
...         self.seen += 1
...         await next(item)
>>> Count().overrides("inbound"), Count().overrides("outbound")
(True, False)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from diaspora.fabric import headers as H
from diaspora.message import Message

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from diaspora.clock import Clock
    from diaspora.events import Event
    from diaspora.fabric import Fabric
    from diaspora.log import FilteringBoundLogger

__all__ = [
    "Host",
    "InputItem",
    "Next",
    "NextOut",
    "OutputItem",
    "RuntimeStats",
    "Stage",
    "StageFactory",
    "chain",
    "split_chain",
]


@dataclass(slots=True)
class RuntimeStats:
    """What one actor runtime did since it started (every field counts up).

    >>> stats = RuntimeStats()
    >>> stats.handled += 2
    >>> stats.as_dict()["handled"]
    2
    """

    #: deliveries taken from the mailbox (a partition's reads, already handled ones too)
    delivered: int = 0
    handled: int = 0
    emitted: int = 0
    #: outputs not published again because a scan found them already emitted
    skipped_replay: int = 0
    dead_lettered: int = 0
    checkpoints: int = 0
    lost: int = 0
    replayed: int = 0
    reconstructed: int = 0
    #: inputs not handled: already handled (replayed earlier) or skipped by a QoS policy
    skipped: int = 0
    stalls: int = 0
    max_lag: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class InputItem:
    """One input on its way to ``handle``; stages read it and may change it.

    ``source`` names the input in output message ids (``<subject>:<seq>`` for
    a stream message); ``origin`` is the stream message being processed when
    this item was made (itself, or the delivery whose arrival revealed a gap),
    against which failures are recorded. ``message`` is set by the decode
    stage (or by whoever made a replayed or reconstructed item);
    ``handled`` by the handle stage.
    """

    subject: str
    seq: int
    headers: Mapping[str, str]
    payload: bytes
    source: str
    timestamp: float = 0.0
    #: messages the stream still held after this one when it was delivered
    pending: int = 0
    #: first stream sequence of a gap just before this message (items the stream lost)
    gap_from: int | None = None
    replayed: bool = False
    reconstructed: bool = False
    origin: InputItem | None = None
    message: Message | None = None
    handled: bool = False
    #: set by a stage that dealt with the item in full (the driver only advances position)
    consumed: bool = False
    #: outputs ``handle`` emitted for it so far (the index in their message ids)
    outputs: int = 0

    @property
    def producer(self) -> str | None:
        return self.headers.get(H.ACTOR)

    @property
    def item(self) -> int | None:
        return H.item_number(self.headers)

    @property
    def stream_message(self) -> InputItem:
        """The stream message this item stands for or was made from."""
        return self.origin if self.origin is not None else self


@dataclass(slots=True)
class OutputItem:
    """One output on its way to its subject (after its message id is stamped)."""

    subject: str
    payload: bytes
    headers: dict[str, str]
    msg_id: str
    item: int
    #: the input being handled when it was emitted (``None`` in a source's ``produce``)
    source: str | None
    published: bool = False


Next = Callable[[InputItem], Awaitable[None]]
NextOut = Callable[[OutputItem], Awaitable[None]]


class Host(Protocol):
    """What a stage sees of the runtime it is part of."""

    @property
    def id(self) -> str: ...
    @property
    def fabric(self) -> Fabric: ...
    @property
    def log(self) -> FilteringBoundLogger: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def stats(self) -> RuntimeStats: ...
    @property
    def max_attempts(self) -> int:
        """How many times ``handle`` may fail on one message before it is poison."""
        ...

    @property
    def handle_deadline(self) -> float | None:
        """Seconds ``handle`` may take (``None``: no deadline)."""
        ...

    @property
    def inputs(self) -> tuple[str, ...]: ...
    @property
    def positions(self) -> Mapping[str, int]: ...
    @property
    def restored(self) -> bool:
        """Whether this start restored a checkpoint."""
        ...

    @property
    def partition(self) -> tuple[int, int] | None: ...
    @property
    def task_group(self) -> TaskGroup:
        """Where a stage starts its background tasks (they end with the runtime)."""
        ...

    async def event(self, event: Event) -> None:
        """Log and publish one event about this actor."""
        ...

    async def submit(self, item: InputItem) -> None:
        """Drive an item the stage made through the whole inbound chain."""
        ...

    def input_head(self, subject: str) -> int:
        """The newest stream sequence of input ``subject`` the mailbox has heard of, or
        that the stream held when this start began (before its first delivery)."""
        ...

    def progressed(self, count: int = 1) -> None:
        """Count items a stage handled on its own toward the next checkpoint."""
        ...

    async def dead_letter(self, item: InputItem, reason: str, trace: str, attempts: int) -> None:
        """Move ``item`` to the actor's dead-letter subject, with the reason."""
        ...

    async def publish_ordered(
        self, subject: str, payload: bytes, headers: Mapping[str, str], msg_id: str
    ) -> None:
        """Publish through the actor's ordered publisher (acked before the next checkpoint)."""
        ...

    async def checkpoint_now(self) -> None:
        """Snapshot now (between messages: in ``setup`` or ``after_batch``) and wait until
        that checkpoint is written."""
        ...


class Stage:
    """Base class of a runtime stage; override the hooks the stage needs.

    - :meth:`inbound` / :meth:`outbound`: the stage's place in the chains
      (not overriding one keeps the stage out of that chain: no cost).
    - :meth:`claim`: once per start, before anything else (a migration
      standby takes the checkpoint over here; see :mod:`diaspora.compute`).
    - :meth:`setup`: once per start, after the checkpoint is restored and
      before the first message; start background tasks on
      ``host.task_group`` here.
    - :meth:`close`: once the runtime has stopped, normally or not.
    - :meth:`after_batch`: after each batch of inputs (and when idle, at
      most every :meth:`tick` seconds).
    - ``section``: the name of the checkpoint section the stage keeps;
      :meth:`snapshot` returns its content (plain data the codec encodes,
      copied: it must not change afterwards), :meth:`restore` gets it back
      with the ``section_version`` it was written with.
    """

    name: ClassVar[str] = "stage"
    section: ClassVar[str | None] = None
    section_version: ClassVar[int] = 1

    def overrides(self, hook: str) -> bool:
        """Whether this stage implements ``hook`` (else the driver leaves it out)."""
        return getattr(type(self), hook) is not getattr(Stage, hook)

    async def setup(self, host: Host) -> None:
        """Prepare for a start (after restore, before the first message)."""

    async def claim(self, host: Host, started: Callable[[], None]) -> Any:
        """Take ownership of the actor's checkpoint yourself, or ``None`` (the default:
        the runtime claims it). Returns a claimed
        :class:`~diaspora.actor.CheckpointSlot`; a migration standby waits here
        for a state to arrive, calling ``started()`` first (the start is not hung)."""
        return None

    async def inbound(self, item: InputItem, next: Next) -> None:
        await next(item)

    async def outbound(self, out: OutputItem, next: NextOut) -> None:
        await next(out)

    async def after_batch(self) -> None:
        """Bookkeeping after a batch of inputs (or an idle tick)."""

    def tick(self) -> float | None:
        """At most how many seconds may pass between two :meth:`after_batch` calls."""
        return None

    def close(self) -> None:
        """Release what the stage holds, once the runtime has stopped (normally or not)."""

    def snapshot(self) -> Any:
        """This stage's checkpoint section now (``section`` must be set)."""
        return None

    def restore(self, data: Any, version: int) -> None:
        """Restore this stage's checkpoint section (written with ``version``)."""


#: Makes a fresh stage for each runtime start: a stage class, or a module-level function
#: (so that it pickles by reference into a process node).
StageFactory = Callable[[], Stage]


def chain(stages: Sequence[Stage], hook: str, last: Callable[[Any], Awaitable[None]]) -> Any:
    """The chain of ``stages``' ``hook`` ("inbound" or "outbound") ending in ``last``.

    Each stage is called with the rest of the chain as ``next``; a stage that
    does not override ``hook`` is left out (it costs nothing per message).
    The links are plain functions returning the stage's coroutine (no
    ``functools.partial`` with a keyword: that copies a dict per call).
    """
    link: Callable[[Any], Awaitable[None]] = last
    for stage in reversed([s for s in stages if s.overrides(hook)]):
        link = _bind(getattr(stage, hook), link)
    return link


def split_chain(
    stages: Sequence[Stage], hook: str, last: Callable[[Any], Awaitable[None]]
) -> tuple[Callable[[Any, Any], Awaitable[None]], Callable[[Any], Awaitable[None]]]:
    """:func:`chain` split at its head: ``(step, rest)``, called as ``step(item, rest)``.

    A driver that runs the chain for every message calls the first stage
    itself (one link less per message).
    """
    present = [s for s in stages if s.overrides(hook)]
    if not present:
        return _skip, last
    return getattr(present[0], hook), chain(present[1:], hook, last)


async def _skip(item: Any, rest: Callable[[Any], Awaitable[None]]) -> None:
    await rest(item)


def _bind(
    step: Callable[[Any, Any], Awaitable[None]], rest: Callable[[Any], Awaitable[None]]
) -> Callable[[Any], Awaitable[None]]:
    return lambda item: step(item, rest)
