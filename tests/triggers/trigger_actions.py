"""Actions and actors the trigger tests name by import path."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import anyio

from diaspora import Actor, Message
from diaspora.triggers import TriggerContext

#: per trigger name: every delivery, as (batch id, seqs, redelivered)
DELIVERIES: dict[str, list[tuple[str, list[int], bool]]] = defaultdict(list)
#: per trigger name: batch numbers whose first delivery raises after it is recorded
CRASH_ON_FIRST: dict[str, set[int]] = defaultdict(set)


class CrashAfterAction(Exception):
    """The callable fails after its side effect: the batch must be delivered again."""


async def record(batch: Sequence[Message], context: TriggerContext) -> None:
    """Record the batch; crash on its first delivery if the test asked for it."""
    DELIVERIES[context.trigger].append(
        (context.batch_id, [m.seq for m in batch], context.redelivered)
    )
    crash = CRASH_ON_FIRST[context.trigger]
    if context.batch_no in crash:
        crash.discard(context.batch_no)
        raise CrashAfterAction(context.batch_id)


def record_sync(batch: Sequence[Message], context: TriggerContext) -> None:
    """The same, as a plain function."""
    DELIVERIES[context.trigger].append(
        (context.batch_id, [m.seq for m in batch], context.redelivered)
    )


def even_x(msg: Message) -> bool:
    """A predicate by import path."""
    return isinstance(msg.data, dict) and msg.data.get("x", 1) % 2 == 0


class Worker(Actor):
    """A child the start-child action starts: says so on ``spawned``, then idles until stopped."""

    def __init__(self, batch: list[dict[str, Any]], label: str = "") -> None:
        self.batch, self.label = batch, label

    async def produce(self) -> None:
        seqs = [entry["seq"] for entry in self.batch]
        await self.emit("spawned", {"worker": self.id, "label": self.label, "seqs": seqs}, item=1)
        await anyio.sleep_forever()  # the runtime cancels produce() when asked to stop


#: per trigger name: the data of every message delivered
DATA: dict[str, list[Any]] = defaultdict(list)


def record_data(batch: Sequence[Message], context: TriggerContext) -> None:
    DATA[context.trigger].extend(m.data for m in batch)
