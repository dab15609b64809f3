"""The reliability suite's three-stage pipeline: producer → stateful transform → sink.

Inputs on ``reliability.requests`` are ``{"key": k, "i": n, "value": v}``:
the ``n``-th input of key ``k``, ``v`` an integer, or ``None`` to close the
key. Each input has exactly one effect on ``reliability.out``:
``{"key": k, "i": n, "count": c, "total": t}`` where ``c`` and ``t`` are the
number and sum of the key's values so far, in order (``"closed": True`` and
the final figures for a close, after which the key's state is dropped).
:func:`expected` is the pure-Python model of the whole pipeline.

>>> expected("k", [3, 4, None])
[{'key': 'k', 'i': 0, 'count': 1, 'total': 3}, {'key': 'k', 'i': 1, 'count': 2, 'total': 7}, \
{'key': 'k', 'i': 2, 'count': 2, 'total': 7, 'closed': True}]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from diaspora import Actor, Message

__all__ = ["REQUESTS", "RESULTS", "Producer", "Sink", "Transform", "expected", "step"]

REQUESTS = "reliability.requests"
RECORDS = "reliability.records"
TOTALS = "reliability.totals"
RESULTS = "reliability.out"


class _Stage(Actor):
    """Checkpoints often (short replays) and treats a handle over 1 s as a crash."""

    checkpoint_every: ClassVar[int | None] = 25
    checkpoint_interval: ClassVar[float] = 0.5
    handle_deadline: ClassVar[float | None] = 1.0


class Producer(_Stage):
    """Ingest: checks each request and forwards it as a record keyed by its key."""

    inputs = (REQUESTS,)
    outputs = (RECORDS,)

    async def handle(self, msg: Message) -> None:
        data = msg.data
        key, index, value = data["key"], data["i"], data["value"]
        if not isinstance(key, str) or not isinstance(index, int):
            raise ValueError(f"request {msg.seq}: key must be a string and i an integer")
        await self.emit(RECORDS, {"key": key, "i": index, "value": value}, key=key)


def step(state: tuple[int, int] | None, value: int | None) -> tuple[tuple[int, int] | None, Any]:
    """One key's transform: (count, total) so far and one value → new state, the effect.

    A ``None`` value closes the key: the effect carries the final figures and
    the state is dropped.
    """
    count, total = state if state is not None else (0, 0)
    if value is None:
        return None, {"count": count, "total": total, "closed": True}
    count, total = count + 1, total + value
    return (count, total), {"count": count, "total": total}


class Transform(_Stage):
    """Stateful: the running count and total of every open key."""

    inputs = (RECORDS,)
    outputs = (TOTALS,)

    def __init__(self) -> None:
        self.open: dict[str, tuple[int, int]] = {}

    async def handle(self, msg: Message) -> None:
        key, index, value = msg.data["key"], msg.data["i"], msg.data["value"]
        state, effect = step(self.open.get(key), value)
        if state is None:
            self.open.pop(key, None)
        else:
            self.open[key] = state
        await self.emit(TOTALS, {"key": key, "i": index, **effect}, key=key)

    def snapshot(self) -> dict[str, list[int]]:
        return {key: list(state) for key, state in self.open.items()}

    def restore(self, state: dict[str, list[int]]) -> None:
        self.open = {key: (count, total) for key, (count, total) in state.items()}


class Sink(_Stage):
    """Delivers each record to the workflow's output subject."""

    inputs = (TOTALS,)
    outputs = (RESULTS,)

    async def handle(self, msg: Message) -> None:
        await self.emit(RESULTS, msg.data, key=msg.data["key"])


def expected(key: str, values: Iterable[int | None]) -> list[dict[str, Any]]:
    """What ``reliability.out`` must hold for ``key``, in order, given its input values."""
    out, state = [], None
    for index, value in enumerate(values):
        state, effect = step(state, value)
        out.append({"key": key, "i": index, **effect})
    return out
