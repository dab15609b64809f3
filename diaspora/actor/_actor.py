"""The class users subclass: an actor consumes subjects, keeps state, and emits to subjects.

>>> from diaspora import Actor, Message
>>> class RunningSum(Actor):
...     inputs = ("numbers",)
...     checkpoint_every = 500
...
...     def __init__(self, scale: int = 1) -> None:
...         self.scale, self.total = scale, 0
...
...     async def handle(self, msg: Message) -> None:
...         self.total += msg.data["x"] * self.scale
...         await self.emit("sums", {"total": self.total, "seq": msg.seq})
...
...     def snapshot(self) -> dict[str, int]:
...         return {"total": self.total}
...
...     def restore(self, state: dict[str, int]) -> None:
...         self.total = state["total"]

An actor with no ``inputs`` is a *source*: the runtime calls its
:meth:`Actor.produce` instead of ``handle`` and checkpoints it at ``emit``
boundaries. Run an actor with :func:`diaspora.run_actor` or put it in a
supervision tree.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from diaspora.errors import ConfigError
from diaspora.fabric._naming import check_input, check_subject

if TYPE_CHECKING:
    from diaspora.actor._runtime import ActorRuntime
    from diaspora.fabric import Fabric
    from diaspora.log import FilteringBoundLogger
    from diaspora.message import Message
    from diaspora.storage import StorageSpec
    from diaspora.streams._history import HistorySpec

__all__ = ["Actor", "OnPoison"]


class OnPoison(enum.Enum):
    """What the runtime does when ``handle`` raises on a message (``Actor.on_poison``)."""

    #: retry ``handle`` in place with backoff; after ``max_attempts`` dead-letter and move on
    RETRY = "retry"
    #: crash (the supervisor restarts the actor from its checkpoint); the start after
    #: ``max_attempts`` crashes on the same message dead-letters it
    CRASH = "crash"

    @classmethod
    def of(cls, value: object, where: str) -> OnPoison:
        """``value`` (a member or its string) as a member; :class:`ConfigError` naming ``where``."""
        for member in cls:
            if value is member or value == member.value:
                return member
        names = ", ".join(repr(m.value) for m in cls)
        raise ConfigError(f"{where}: {value!r} is not one of {names}")


class Actor:
    """Base class of every actor; override ``handle`` (or ``produce``) and, if stateful,
    ``snapshot``/``restore``.

    Class attributes configure the runtime:

    - ``inputs``: subjects consumed (each captured by a JetStream stream),
      and event inputs: subject patterns under ``diaspora.events.`` (see
      :func:`diaspora.events.events_input`), read as typed events with
      :attr:`Message.event <diaspora.Message.event>`.
    - ``outputs``: subjects emitted to, ensured at start (others are ensured
      on first ``emit``).
    - ``checkpoint_every`` messages and/or ``checkpoint_interval`` seconds
      between checkpoints (the interval also bounds the duplicate window the
      outputs need, see the README).
    - ``max_attempts``: ``handle`` raising this many times on the same message
      makes it a poison message: it goes to ``diaspora.dlq.<actor>`` and the
      actor moves on.
    - ``on_poison``: ``"retry"`` (default) retries a raising ``handle`` in
      place, with backoff, on the same state; ``"crash"`` crashes the actor
      on each failure, so its supervisor restarts it from its checkpoint (see
      :class:`OnPoison`).
    - ``batch_size``, ``max_in_flight``, ``max_in_flight_bytes``: pull batch and
      the window of requested-but-unhandled messages (count and bytes) per input.
    - ``handle_deadline``: seconds a ``handle`` may take before the actor is
      treated as crashed (``None``: no deadline).
    - ``checkpoint_storage``: a :class:`~diaspora.storage.StorageSpec` keeps a
      state too large for the checkpoint record in resilient storage (chunks
      replicated or erasure-coded over sites) instead of the connected site's
      object store (``None``: the object store).
    - ``history``: a :class:`~diaspora.streams.HistorySpec` makes the actor
      keep what it emits (memory, then disk) and serve it to consumers whose
      stream lost items (``None``: no history).
    """

    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    checkpoint_every: ClassVar[int | None] = 1000
    checkpoint_interval: ClassVar[float] = 5.0
    max_attempts: ClassVar[int] = 3
    on_poison: ClassVar[OnPoison | str] = OnPoison.RETRY
    batch_size: ClassVar[int] = 256
    max_in_flight: ClassVar[int] = 1024
    max_in_flight_bytes: ClassVar[int] = 16 * 1024 * 1024
    handle_deadline: ClassVar[float | None] = None
    history: ClassVar[HistorySpec | None] = None
    checkpoint_storage: ClassVar[StorageSpec | None] = None

    _bound_runtime: ActorRuntime
    _bound_emit: Callable[..., Awaitable[None]]
    _bound_leave_out: Callable[[str, int], None]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__qualname__}"
        if isinstance(cls.inputs, str) or isinstance(cls.outputs, str):
            raise ConfigError(f"{where}: inputs/outputs must be tuples of subjects, not a string")
        cls.inputs = tuple(check_input(s, where=f"{where}.inputs") for s in cls.inputs)
        cls.outputs = tuple(check_subject(s, where=f"{where}.outputs") for s in cls.outputs)
        if cls.checkpoint_every is not None and cls.checkpoint_every < 1:
            raise ConfigError(f"{where}.checkpoint_every: {cls.checkpoint_every!r} must be >= 1")
        if not cls.checkpoint_interval > 0:
            raise ConfigError(
                f"{where}.checkpoint_interval: {cls.checkpoint_interval!r} must be > 0 seconds"
            )
        if cls.max_attempts < 1:
            raise ConfigError(f"{where}.max_attempts: {cls.max_attempts!r} must be >= 1")
        cls.on_poison = OnPoison.of(cls.on_poison, f"{where}.on_poison")
        if not 1 <= cls.batch_size <= cls.max_in_flight:
            raise ConfigError(
                f"{where}: need 1 <= batch_size ({cls.batch_size}) <= max_in_flight "
                f"({cls.max_in_flight})"
            )
        if cls.handle_deadline is not None and not cls.handle_deadline > 0:
            raise ConfigError(f"{where}.handle_deadline: {cls.handle_deadline!r} must be > 0")

    # -- what users override -----------------------------------------------------------

    async def handle(self, msg: Message) -> None:
        """Process one input message (override in actors with ``inputs``)."""
        raise NotImplementedError(
            f"{type(self).__qualname__} consumes {self.inputs} but does not override handle()"
        )

    async def produce(self) -> None:
        """Emit items (override in source actors, which have no ``inputs``).

        Returning ends the source normally. Checkpoints are taken at ``emit``
        boundaries; give each item its own number with ``emit(..., item=n)``
        so that a restarted source re-emitting items is de-duplicated.
        """
        raise NotImplementedError(
            f"{type(self).__qualname__} has no inputs and does not override produce()"
        )

    def snapshot(self) -> Any:
        """The state to checkpoint (anything :mod:`diaspora.codec` encodes); default none."""
        return None

    def restore(self, state: Any) -> None:
        """Set the state from a checkpoint's :meth:`snapshot` (called before ``on_start``)."""

    async def on_start(self) -> None:
        """Called once per (re)start, after ``restore`` and before the first message."""

    async def on_stop(self) -> None:
        """Called when the actor stops, normally or not (keep it short)."""

    # -- what the runtime provides -------------------------------------------------------

    @property
    def id(self) -> str:
        """This actor's id (``supervisor.child`` in a tree)."""
        return self._runtime.id

    @property
    def log(self) -> FilteringBoundLogger:
        """A structlog logger bound to ``actor=<id>``."""
        return self._runtime.log

    @property
    def fabric(self) -> Fabric:
        """The fabric the actor runs on (for KV/object store use beyond emit)."""
        return self._runtime.fabric

    @property
    def stopping(self) -> bool:
        """True once a graceful stop was requested (sources should wind down)."""
        return self._runtime.stop_requested

    async def emit(
        self,
        subject: str,
        data: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        item: int | None = None,
        msg_id: str | None = None,
    ) -> None:
        """Publish ``data`` to ``subject``, effectively once.

        Inside ``handle`` the message id is derived from the input being
        handled and the output's index within it; in a source from ``item``
        (default: the next item number of ``subject``). ``msg_id`` replaces
        the derived id with one the caller makes unique and repeatable (the
        same output after a restart must get the same id: JetStream and the
        output scan then keep one copy). ``key`` sets the partition key
        header. Returns once queued; the checkpoint that covers this emit is
        written only after it is acknowledged.
        """
        try:
            emit = self._bound_emit  # the runtime's emitter, bound when it starts
        except AttributeError:
            self._runtime  # noqa: B018  # raises, saying the actor is not running
            raise
        await emit(subject, data, key=key, headers=headers, item=item, msg_id=msg_id)

    def leave_out(self, subject: str, count: int = 1) -> None:
        """Leave the next ``count`` items of ``subject`` out on purpose (decimation at the source).

        The producer's item numbers skip them and its next output to
        ``subject`` says so (``Diaspora-Thinned: <count>``): consumers neither
        ask the producer's history for them nor report them lost; a consumer
        whose input names a ``reconstructor`` gets stand-ins, marked
        reconstructed, and every consumer reports a ``thinned`` event. An
        edge that cannot send everything up a congested link thins at the
        source::

            if congested and self.frames % 2:
                self.leave_out("ptycho.diff")
            else:
                await self.emit("ptycho.diff", frame)

        Not for a partitioned subject (keyed scale-out numbers each partition).
        """
        try:
            leave_out = self._bound_leave_out
        except AttributeError:
            self._runtime  # noqa: B018  # raises, saying the actor is not running
            raise
        leave_out(subject, count)

    async def checkpoint(self) -> None:
        """Take a checkpoint now and wait until it is written."""
        await self._runtime.checkpoint_now()

    @property
    def _runtime(self) -> ActorRuntime:
        try:
            return self._bound_runtime
        except AttributeError:
            raise RuntimeError(
                f"{type(self).__qualname__} is not running: start it with run_actor() or a "
                "supervisor (emit/log/id exist only inside the runtime)"
            ) from None
