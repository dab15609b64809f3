"""The trigger's stage: match inputs, cut batches, fire each batch exactly once.

Exactly once across crashes rests on three rules:

- **The pending batch is checkpointed.** A matching input joins ``pending``
  in the inbound chain, before the runtime advances its position, so every
  snapshot (taken between two messages) has each input either in ``pending``
  and in the positions, or in neither: a restart neither loses nor repeats it.
- **A batch is sealed durably before it fires.** Cutting (``batch_size``
  reached, or ``window`` seconds since the batch opened) moves inputs from
  ``pending`` into ``sealed`` under the next batch number, then a checkpoint
  is written and waited for. Only then does the action run. A crash before
  that write re-cuts from the old checkpoint (nothing fired); a crash after
  it finds the same batch, same number and same contents, sealed.
- **Completion is recorded.** After the action returns, the batch leaves
  ``sealed`` and another checkpoint is written. A crash between the action
  and that write fires the batch again on restart, with the same
  ``batch_id``: the publish action's ``Nats-Msg-Id`` is the batch id (the
  stream keeps one copy), a start-child request carries it (the control
  server answers a repeat with its first answer), and a callable sees
  ``context.redelivered`` and dedupes on ``context.batch_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from diaspora.events import Fired
from diaspora.message import Message
from diaspora.stage import Host, InputItem, Next, Stage
from diaspora.triggers._actions import Firing, TriggerContext
from diaspora.triggers._spec import Start, TriggerSpec

__all__ = ["TriggerStage"]

#: The longest idle wait between two checks of the window (and of restored sealed batches).
_MAX_TICK_S: Final = 1.0
_MIN_TICK_S: Final = 0.01

#: One input of a batch as kept in the checkpoint: subject, seq, timestamp, headers, data.
Entry = list[Any]


class TriggerStage(Stage):
    """Runs one :class:`~diaspora.triggers.TriggerSpec` inside its actor's runtime."""

    name = "trigger"
    section = "trigger"

    def __init__(self, spec: TriggerSpec) -> None:
        self.spec = spec
        self._where = spec.where
        self._predicate = spec.load_predicate()
        self.pending: list[Entry] = []
        #: cut, checkpointed, not yet known to have fired: [batch number, entries]
        self.sealed: list[tuple[int, list[Entry]]] = []
        self.next_batch = 1
        #: per subject: inputs at or before this sequence are not for this trigger (start)
        self.skip_upto: dict[str, int] | None = None
        #: batches fired in this start (a redelivered one included)
        self.fired = 0
        self._restored_sealed = 0
        self._opened_at: float | None = None
        self._host: Host | None = None
        self._firing: Firing | None = None

    # -- checkpoint section -----------------------------------------------------------

    def snapshot(self) -> Any:
        return {
            "pending": list(self.pending),
            "sealed": [[no, list(entries)] for no, entries in self.sealed],
            "next_batch": self.next_batch,
            "skip_upto": dict(self.skip_upto) if self.skip_upto is not None else None,
        }

    def restore(self, data: Any, version: int) -> None:
        self.pending = [list(e) for e in data["pending"]]
        self.sealed = [(int(no), [list(e) for e in entries]) for no, entries in data["sealed"]]
        self.next_batch = int(data["next_batch"])
        skip = data.get("skip_upto")
        self.skip_upto = dict(skip) if skip is not None else None
        self._restored_sealed = len(self.sealed)

    # -- stage hooks ------------------------------------------------------------------

    async def setup(self, host: Host) -> None:
        self._host = host
        self._firing = await Firing.ready(self.spec, host)
        if self.pending:
            self._opened_at = host.clock.monotonic()
        if self.skip_upto is None:
            self.skip_upto = await self._start_positions(host)
            await host.checkpoint_now()  # a restart keeps where the first start began

    async def _start_positions(self, host: Host) -> dict[str, int]:
        start = self.spec.start
        if start.kind is Start.NEW:
            _, last = await host.fabric.stream_bounds(self.spec.subject)
            return {self.spec.subject: last}
        if start.kind is Start.SEQ:
            assert start.value is not None
            return {self.spec.subject: int(start.value) - 1}
        return {}

    def tick(self) -> float | None:
        window = self.spec.window
        if window is None:
            return _MAX_TICK_S
        return min(_MAX_TICK_S, max(_MIN_TICK_S, window / 4))

    async def inbound(self, item: InputItem, next: Next) -> None:
        msg = item.message
        if msg is not None and self._admits(item) and self._matches(msg):
            if not self.pending:
                assert self._host is not None
                self._opened_at = self._host.clock.monotonic()
            self.pending.append([msg.subject, msg.seq, msg.timestamp, dict(msg.headers), msg.data])
        await next(item)

    def _matches(self, msg: Message) -> bool:
        return self._where.matches(msg) and (self._predicate is None or self._predicate(msg))

    def _admits(self, item: InputItem) -> bool:
        start = self.spec.start
        if start.kind is Start.TIME:
            assert start.value is not None
            return not item.timestamp or item.timestamp >= start.value
        upto = self.skip_upto.get(item.subject) if self.skip_upto else None
        return upto is None or item.seq == 0 or item.seq > upto

    async def after_batch(self) -> None:
        host = self._host
        assert host is not None
        if self._cut(host.clock.monotonic()):
            await host.checkpoint_now()  # sealed durably before anything fires
        if not self.sealed:
            return
        while self.sealed:
            number, entries = self.sealed[0]
            await self._fire(host, number, entries)
            self.sealed.pop(0)
        await host.checkpoint_now()  # completion recorded

    def _cut(self, now: float) -> bool:
        size, window = self.spec.batch_size, self.spec.window
        cut = False
        while len(self.pending) >= size:
            self._seal(self.pending[:size])
            self.pending = self.pending[size:]
            self._opened_at = now
            cut = True
        opened = self._opened_at
        if self.pending and window is not None and opened is not None and now - opened >= window:
            self._seal(self.pending)
            self.pending = []
            cut = True
        return cut

    def _seal(self, entries: list[Entry]) -> None:
        self.sealed.append((self.next_batch, entries))
        self.next_batch += 1

    async def _fire(self, host: Host, number: int, entries: Sequence[Entry]) -> None:
        assert self._firing is not None
        redelivered = self._restored_sealed > 0
        if redelivered:
            self._restored_sealed -= 1
        context = TriggerContext(
            trigger=self.spec.name,
            actor=host.id,
            batch_no=number,
            batch_id=f"{host.id}:batch:{number}",
            redelivered=redelivered,
            fabric=host.fabric,
            log=host.log,
        )
        await self._firing.fire(entries, context)
        self.fired += 1
        await host.event(
            Fired(
                name=host.id,
                trigger=self.spec.name,
                batch=context.batch_id,
                batch_no=number,
                count=len(entries),
                action=self.spec.action.kind,
                redelivered=redelivered,
            )
        )
