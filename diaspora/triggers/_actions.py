"""What a fired batch does: call a function, publish, start a child, switch a QoS policy.

Every action gets the batch's ``batch_id`` (``<trigger actor>:batch:<n>``),
the same for every delivery of that batch, so a repeat after a crash is
recognised: the publish action sends it as ``Nats-Msg-Id``, the start-child
request carries it, and a callable reads ``context.batch_id``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diaspora import codec
from diaspora.actor._emit import required_window
from diaspora.actor._runtime import DEFAULT_RESTART_ALLOWANCE
from diaspora.fabric import headers as H
from diaspora.message import Message
from diaspora.streams._qos import QosSpec
from diaspora.streams._registry import declare_qos, lookup_qos
from diaspora.triggers._control import request_start_child
from diaspora.triggers._spec import (
    CallAction,
    EventAction,
    PublishAction,
    QosAction,
    StartChildAction,
    TriggerSpec,
    batch_record,
)

if TYPE_CHECKING:
    from diaspora.fabric import Fabric
    from diaspora.log import FilteringBoundLogger
    from diaspora.stage import Host

__all__ = ["BATCH_HEADER", "Firing", "TriggerContext"]

#: Header of a published batch: its batch id (also its ``Nats-Msg-Id``).
BATCH_HEADER = "Diaspora-Trigger-Batch"
#: Checkpoints of a trigger are 5 s apart at most (the Actor default).
_CHECKPOINT_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class TriggerContext:
    """What an action learns besides the batch.

    ``batch_id`` is stable across redeliveries of the same batch (dedupe on
    it); ``redelivered`` is true when the batch was restored from a
    checkpoint, sealed, so this may be its second delivery.
    """

    trigger: str
    actor: str
    batch_no: int
    batch_id: str
    redelivered: bool
    fabric: Fabric
    log: FilteringBoundLogger


def messages_of(entries: Sequence[Sequence[Any]]) -> list[Message]:
    """The batch's inputs as :class:`~diaspora.Message` values, in arrival order."""
    return [
        Message(data=data, subject=subject, seq=seq, headers=headers, timestamp=timestamp)
        for subject, seq, timestamp, headers, data in entries
    ]


class Firing:
    """The action of one trigger, ready to fire (imports and streams done once per start)."""

    def __init__(self, spec: TriggerSpec, host: Host) -> None:
        self._spec = spec
        self._host = host
        self._call: Callable[..., Any] | None = None

    @classmethod
    async def ready(cls, spec: TriggerSpec, host: Host) -> Firing:
        firing = cls(spec, host)
        action = spec.action
        if isinstance(action, CallAction):
            firing._call = action.load(f"trigger {spec.name!r}: action.call")
        elif isinstance(action, PublishAction):
            window = required_window(_CHECKPOINT_INTERVAL, DEFAULT_RESTART_ALLOWANCE)
            await host.fabric.require_stream(action.subject, min_duplicate_window=window)
        return firing

    async def fire(self, entries: Sequence[Sequence[Any]], context: TriggerContext) -> None:
        """Run the action on one batch; raising crashes the trigger (it fires again)."""
        action, host = self._spec.action, self._host
        batch = messages_of(entries)
        if isinstance(action, CallAction):
            assert self._call is not None
            result = self._call(batch, context)
            if inspect.isawaitable(result):
                await result
        elif isinstance(action, PublishAction):
            payload = codec.encode(
                {
                    "trigger": self._spec.name,
                    "batch": context.batch_id,
                    "batch_no": context.batch_no,
                    "events": batch_record(batch),
                }
            )
            headers = {H.ACTOR: host.id, BATCH_HEADER: context.batch_id}
            await host.publish_ordered(action.subject, payload, headers, context.batch_id)
        elif isinstance(action, EventAction):
            pass  # the fired event, published by the stage for every action, is the whole action
        elif isinstance(action, StartChildAction):
            args = {**action.args, "batch": batch_record(batch)}
            await request_start_child(
                host.fabric,
                action.supervisor,
                args,
                request_id=context.batch_id,
                timeout=action.timeout,
            )
        else:
            await _switch_policy(host.fabric, action)


async def _switch_policy(fabric: Fabric, action: QosAction) -> None:
    """Declare ``action.subject``'s QoS with the new policy (idempotent: same value again)."""
    current = await lookup_qos(fabric, action.subject) or QosSpec(where=f"qos {action.subject}")
    if current.policy != action.policy:
        switched = dataclasses.replace(current, policy=action.policy)
        await declare_qos(fabric, action.subject, switched)
