"""Poison messages: failures recorded per input, dead letters with the reason.

``handle`` raising on a stream message records a :class:`FailureNote`
against it (kept in KV next to the checkpoint, so it survives the crash);
once the same message has failed ``max_attempts`` times in a row, the next
start moves it to ``diaspora.dlq.<actor>`` instead of handing it over again.
Undecodable payloads go there at once.
"""

from __future__ import annotations

import time
import traceback
from typing import Final

import anyio

from diaspora import codec
from diaspora.actor._checkpoint import CheckpointSlot, FailureNote
from diaspora.events import Crashed, DeadLettered
from diaspora.fabric import headers as H
from diaspora.fabric._naming import dlq_subject
from diaspora.stage import Host, InputItem, Next, Stage

__all__ = ["Poison"]

_NOTE_TIMEOUT_S: Final = 5.0


class Poison(Stage):
    """Dead-letters a stream message that failed ``max_attempts`` times; records failures."""

    name = "poison"

    def __init__(self, slot: CheckpointSlot) -> None:
        self._slot = slot
        self._failure: FailureNote | None = None
        self._host: Host | None = None

    async def setup(self, host: Host) -> None:
        self._host = host
        self._failure = await self._slot.failure()

    def overrides(self, hook: str) -> bool:
        if hook == "inbound":  # only a failure recorded before this start can be poison
            return self._failure is not None
        return Stage.overrides(self, hook)

    async def inbound(self, item: InputItem, next: Next) -> None:
        failure = self._failure
        host = self._host
        assert host is not None
        if (
            failure is not None
            and (failure.subject, failure.seq) == (item.subject, item.seq)
            and failure.attempts >= host.max_attempts
        ):
            await host.dead_letter(
                item,
                f"handle raised {failure.attempts} times: {failure.reason}",
                failure.traceback,
                failure.attempts,
            )
            item.consumed = True
        else:
            await next(item)
        if failure is not None and failure.subject == item.subject and item.seq >= failure.seq:
            self._failure = None
            try:
                await self._slot.clear_failure()
            except Exception as exc:  # a stale note costs one needless check at the next start
                host.log.debug("failure_not_cleared", error=repr(exc))

    async def note_failure(self, item: InputItem, exc: BaseException) -> None:
        """Record that ``handle`` raised ``exc`` on ``item`` (durably, before crashing)."""
        host = self._host
        assert host is not None
        previous = self._failure
        same = previous is not None and (previous.subject, previous.seq) == (
            item.subject,
            item.seq,
        )
        attempts = previous.attempts + 1 if same and previous is not None else 1
        reason = f"{type(exc).__name__}: {exc}"
        note = FailureNote(
            subject=item.subject,
            seq=item.seq,
            attempts=attempts,
            reason=reason,
            traceback="".join(traceback.format_exception(exc)),
        )
        self._failure = note
        with anyio.CancelScope(shield=True), anyio.move_on_after(_NOTE_TIMEOUT_S) as scope:
            try:
                await self._slot.note_failure(note)
            except Exception as write_error:
                host.log.warning("failure_not_recorded", error=repr(write_error))
        if scope.cancelled_caught:
            host.log.warning("failure_not_recorded", error="timeout")
        await host.event(
            Crashed(
                name=host.id,
                reason=reason,
                subject=item.subject,
                seq=item.seq,
                attempt=attempts,
                poison=attempts >= host.max_attempts,
            )
        )


async def dead_letter(host: Host, item: InputItem, reason: str, trace: str, attempts: int) -> None:
    """Publish ``item`` with why it failed on ``diaspora.dlq.<actor>`` (once per input)."""
    record = {
        "actor": host.id,
        "subject": item.subject,
        "seq": item.seq,
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
    await host.publish_ordered(
        dlq_subject(host.id),
        codec.encode(record),
        headers,
        f"{host.id}:dlq:{item.subject}:{item.seq}",
    )
    host.stats.dead_lettered += 1
    await host.event(DeadLettered(name=host.id, subject=item.subject, seq=item.seq, reason=reason))
