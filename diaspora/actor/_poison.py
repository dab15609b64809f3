"""Poison messages: failures noted per input, retries in place, durable dead letters.

When ``handle`` raises, the handle stage asks :meth:`Poison.retry` what to
do. Each failure is noted against its input (a :class:`FailureNote` per
``(subject, seq)``, all of them kept in one KV value next to the checkpoint,
so they survive a crash). With ``on_poison = "retry"`` (the default)
``handle`` is called again in place after a backoff, on the same state;
with ``"crash"`` the actor crashes and its supervisor restarts it from its
checkpoint. Once an input has failed ``max_attempts`` times it is published
to ``diaspora.dlq.<actor>`` (and acknowledged), then its note is marked
dead: a restart skips it instead of handling or dead-lettering it again.
Undecodable payloads are dead-lettered at once, the same way. A note is
dropped once a checkpoint's position covers its stream message.
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio

from diaspora import codec
from diaspora.actor._actor import OnPoison
from diaspora.actor._checkpoint import CheckpointSlot, FailureNote
from diaspora.backoff import Backoff
from diaspora.errors import ActorCrashed, ConfigError, FabricUnavailable
from diaspora.events import Crashed, DeadLettered, HandleFailed
from diaspora.fabric import headers as H
from diaspora.fabric._naming import dlq_subject
from diaspora.stage import Host, InputItem, Next, Stage

if TYPE_CHECKING:
    from diaspora.actor._actor import Actor

__all__ = ["RETRY_BACKOFF", "OnPoison", "Poison", "PoisonPolicy"]

#: Waits between in-place attempts of ``handle`` (the n-th retry waits ``delay(n)``).
RETRY_BACKOFF: Final = Backoff(initial=0.1, max=5.0, factor=2.0, jitter=0.1)
_NOTE_TIMEOUT_S: Final = 5.0
_PUBLISH_TRIES: Final = 5


@dataclass(frozen=True, slots=True)
class PoisonPolicy:
    """Overrides of an actor class's ``max_attempts`` and ``on_poison`` (``None``: the class's).

    A workflow file's ``max_attempts`` and ``on_poison`` keys of an actor child
    become one of these, passed to the runtime:

    >>> PoisonPolicy(max_attempts=5, on_poison="crash").on_poison
    <OnPoison.CRASH: 'crash'>
    """

    max_attempts: int | None = None
    on_poison: OnPoison | str | None = None

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if attempts is not None and (
            isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        ):
            raise ConfigError(f"max_attempts: {attempts!r} must be an integer >= 1")
        if self.on_poison is not None:
            object.__setattr__(self, "on_poison", OnPoison.of(self.on_poison, "on_poison"))


class Poison(Stage):
    """Decides on ``handle`` failures; skips (or dead-letters) noted inputs after a restart.

    Its ``inbound`` is in the chain only when this start found failure notes.
    """

    name = "poison"

    def __init__(self, slot: CheckpointSlot, actor: Actor, policy: PoisonPolicy | None) -> None:
        self._slot = slot
        policy = policy or PoisonPolicy()
        self.max_attempts = policy.max_attempts or actor.max_attempts
        self.on_poison = OnPoison.of(policy.on_poison or actor.on_poison, "on_poison")
        self._notes: dict[str, FailureNote] = {}
        self._at_start = False
        self._host: Host | None = None
        self._rng = random.Random()

    async def setup(self, host: Host) -> None:
        self._host = host
        found = await self._slot.failures()
        self._notes = {k: n for k, n in found.items() if n.seq > host.positions.get(n.subject, 0)}
        self._at_start = bool(self._notes)
        if len(self._notes) != len(found):
            await self._save()

    def overrides(self, hook: str) -> bool:
        if hook == "inbound":  # only an input noted before this start can come again
            return self._at_start
        return Stage.overrides(self, hook)

    async def inbound(self, item: InputItem, next: Next) -> None:
        note = self._notes.get(item.source)
        if note is None:
            await next(item)
        elif note.dead:
            host = self._host
            assert host is not None
            host.stats.skipped += 1
            host.log.info("dead_letter_skipped", subject=item.subject, seq=item.seq)
        elif note.attempts >= self.max_attempts:  # crashed on it, or died dead-lettering it
            reason = f"handle raised {note.attempts} times: {note.reason}"
            await self.dead_letter(item, reason, note.traceback, note.attempts)
        else:
            await next(item)

    async def failed(
        self, item: InputItem, exc: Exception, again: Callable[[InputItem], Awaitable[None]]
    ) -> bool:
        """``handle`` raised ``exc`` on ``item``: call ``again`` until it succeeds (``True``)
        or the item is dead-lettered (``False``); raises :class:`ActorCrashed` in crash mode.

        An attempt that had emitted before it raised crashes the actor too,
        whatever ``on_poison`` says: its state has moved past the input (a
        running total counted it), so a retry in place on that state would
        count it twice. The restart from the checkpoint handles it again on
        the state before it, and its outputs keep their ids; the note still
        dead-letters an input that keeps failing.
        """
        while await self.retry(item, exc, crash=item.outputs > 0):
            try:
                await again(item)
            except Exception as failure:
                exc = failure
                continue
            await self.recovered(item)
            return True
        return False

    async def retry(self, item: InputItem, exc: Exception, *, crash: bool = False) -> bool:
        """``handle`` raised ``exc`` on ``item``: whether to call it again (after a backoff).

        ``False``: the item was dead-lettered. Raises :class:`ActorCrashed`
        with ``on_poison = "crash"`` (or ``crash``).
        """
        host = self._host
        assert host is not None
        note = await self._note(item, exc)
        attempt, last = note.attempts, note.attempts >= self.max_attempts
        if crash or self.on_poison is OnPoison.CRASH:
            await host.event(
                Crashed(
                    name=host.id,
                    reason=note.reason,
                    subject=note.subject,
                    seq=note.seq,
                    attempt=attempt,
                    poison=last,
                )
            )
            raise ActorCrashed(host.id, exc) from exc
        delay = None if last else RETRY_BACKOFF.delay(attempt, self._rng)
        await host.event(
            HandleFailed(
                name=host.id,
                reason=note.reason,
                subject=note.subject,
                seq=note.seq,
                attempt=attempt,
                retry_in_s=delay,
            )
        )
        if delay is None:
            reason = f"handle raised {attempt} times: {note.reason}"
            await self.dead_letter(item, reason, note.traceback, attempt)
            return False
        await host.clock.sleep(delay)
        return True

    async def recovered(self, item: InputItem) -> None:
        """A retried ``handle`` of ``item`` succeeded: its note is no longer needed."""
        if self._notes.pop(item.source, None) is not None and item.stream_message.seq:
            await self._save()

    async def dead_letter(self, item: InputItem, reason: str, trace: str, attempts: int) -> None:
        """Publish ``item`` with why it failed on ``diaspora.dlq.<actor>``, then note it dead.

        The dead letter is acknowledged before the note is written; a restart
        in between publishes it again under the same message id (a duplicate
        JetStream drops).
        """
        host = self._host
        assert host is not None
        await _publish_dead_letter(host, item, reason, trace, attempts, self._rng)
        origin = item.stream_message
        self._notes[item.source] = FailureNote(
            origin.subject, origin.seq, attempts, reason, source=item.source, dead=True
        )
        with anyio.CancelScope(shield=True):  # the event and the note, both or neither
            host.stats.dead_lettered += 1
            await host.event(
                DeadLettered(name=host.id, subject=item.subject, seq=item.seq, reason=reason)
            )
            if origin.seq:
                await self._save()

    async def _note(self, item: InputItem, exc: Exception) -> FailureNote:
        origin = item.stream_message
        previous = self._notes.get(item.source)
        note = FailureNote(
            subject=origin.subject,
            seq=origin.seq,
            attempts=previous.attempts + 1 if previous is not None else 1,
            reason=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
            source=item.source,
        )
        self._notes[item.source] = note
        if origin.seq:  # an item no stream message stands for cannot come back after a restart
            await self._save()
        return note

    async def _save(self) -> None:
        """Write the notes (durably, before going on); drop those a checkpoint covers."""
        host = self._host
        assert host is not None
        current = self._slot.current
        covered = current.positions if current is not None else {}
        for source, note in list(self._notes.items()):
            if 0 < note.seq <= covered.get(note.subject, 0):
                del self._notes[source]
        durable = [note for note in self._notes.values() if note.seq]
        with anyio.CancelScope(shield=True), anyio.move_on_after(_NOTE_TIMEOUT_S) as scope:
            try:
                await self._slot.keep_failures(durable)
            except Exception as exc:
                host.log.warning("failure_notes_not_written", error=repr(exc))
        if scope.cancelled_caught:
            host.log.warning("failure_notes_not_written", error="timeout")


async def _publish_dead_letter(
    host: Host, item: InputItem, reason: str, trace: str, attempts: int, rng: random.Random
) -> None:
    """Publish the dead letter of ``item`` and wait for its acknowledgement (once per input)."""
    record = {
        "actor": host.id,
        "subject": item.subject,
        "seq": item.seq,
        "source": item.source,
        "reason": reason,
        "traceback": trace,
        "attempts": attempts,
        "headers": dict(item.headers),
        "payload": item.payload,
        "time": time.time(),
    }
    headers = {
        H.ACTOR: host.id,
        H.DEAD_REASON: " ".join(reason.split())[:400],
        H.DEAD_SUBJECT: item.subject,
        H.DEAD_SEQ: str(item.seq),
    }
    payload, msg_id = codec.encode(record), f"{host.id}:dlq:{item.source}"
    for attempt in range(1, _PUBLISH_TRIES + 1):
        try:
            await host.fabric.publish_bytes(
                dlq_subject(host.id), payload, headers=headers, msg_id=msg_id
            )
            return
        except FabricUnavailable as exc:
            if attempt == _PUBLISH_TRIES:
                raise ActorCrashed(host.id, exc) from exc
            host.log.warning("dead_letter_retry", attempt=attempt, error=repr(exc))
            await host.clock.sleep(RETRY_BACKOFF.delay(attempt, rng))
