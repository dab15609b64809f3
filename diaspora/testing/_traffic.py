"""Keyed test traffic: the inputs a workflow under test reads, and its outputs checked per key.

The ``n``-th input of key ``k`` is published with ``Diaspora-Key: k`` and
``Nats-Msg-Id: k:n`` (:func:`publish_input`), so that a resend after a lost
connection is dropped by JetStream's duplicate window. The workflow answers
each input with one output naming ``(k, n)``; :func:`check_outputs` compares
what came out for each key with what a model says must, and
:func:`recovery_time` measures how long after a fault new inputs got through
again. Used by :class:`~diaspora.testing.machine.WorkflowMachine` and by the
scenario runner in ``sims/``.

>>> check = check_outputs(
...     {"a": ["a0", "a1", "a2"]},
...     {"a": [(0, "a0"), (2, "a2"), (2, "a2"), (1, "oops")]},
... )
>>> check.lost, check.duplicated, check.reordered, check.wrong
(0, 1, 1, 1)
>>> recovery_time(10.0, [(9.0, "x"), (10.5, "y")], {"x": 9.1, "y": 12.0})
1.5
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

from diaspora import codec
from diaspora.fabric import headers as H
from diaspora.fabric._publisher import OrderedPublisher

__all__ = ["OutputCheck", "check_outputs", "input_msg_id", "publish_input", "recovery_time"]

_K = TypeVar("_K", bound=Hashable)


def input_msg_id(key: str, index: int) -> str:
    """The ``Nats-Msg-Id`` of the ``index``-th input of ``key``: ``key:index``."""
    return f"{key}:{index}"


async def publish_input(
    publisher: OrderedPublisher, subject: str, key: str, index: int, data: Any
) -> int:
    """Queue the ``index``-th input of ``key`` (payload ``data``) on ``subject``; return the
    publisher's index of the message (for :meth:`OrderedPublisher.flush`)."""
    return await publisher.publish(
        subject, codec.encode(data), headers={H.KEY: key}, msg_id=input_msg_id(key, index)
    )


@dataclass(frozen=True, slots=True)
class OutputCheck:
    """Outputs of every key compared with the model's.

    ``lost``: expected outputs missing; ``duplicated``: outputs present more
    than once; ``reordered``: places where a key's outputs (first copies)
    step back in input order; ``wrong``: outputs that differ from the model's
    (or answer an input that was never sent). ``problems`` gives examples.
    """

    outputs: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    wrong: int = 0
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.wrong)


def check_outputs(
    expected: Mapping[str, Sequence[Any]],
    got: Mapping[str, Sequence[tuple[int, Any]]],
    *,
    max_problems: int = 20,
) -> OutputCheck:
    """Compare, key by key, the outputs ``got`` — ``(input index, data)`` in stream order —
    with the ``expected`` ones (the model's, one per input, in input order).

    Keys of ``got`` that are not in ``expected`` are not looked at.
    """
    lost = duplicated = reordered = wrong = outputs = 0
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < max_problems:
            problems.append(text)

    for key, want in expected.items():
        received = got.get(key, ())
        outputs += len(received)
        indices = [index for index, _ in received]
        counts = Counter(indices)
        duplicated += sum(n - 1 for n in counts.values())
        missing = [i for i in range(len(want)) if i not in counts]
        lost += len(missing)
        first_seen = list(dict.fromkeys(indices))
        reordered += sum(1 for a, b in pairwise(first_seen) if b < a)
        for index, data in received:
            if not 0 <= index < len(want) or data != want[index]:
                wrong += 1
                model = want[index] if 0 <= index < len(want) else "no such input"
                problem(f"{key}[{index}]: got {data!r}, model {model!r}")
        if missing:
            problem(f"{key}: missing outputs for inputs {missing[:10]}")
    return OutputCheck(outputs, lost, duplicated, reordered, wrong, tuple(problems))


def recovery_time(
    end: float, sent: Sequence[tuple[float, _K]], arrival: Mapping[_K, float]
) -> float | None:
    """Seconds from ``end`` (a fault's end) to the output of the first input sent at or after
    it; ``None`` when no input was sent after ``end`` or that input's output is missing.

    ``sent`` is ``(time, input)`` sorted by time, ``arrival`` each input's
    output time, on the same clock (``time.time()``, a server's timestamps
    on the same host).
    """
    first = next(((t, item) for t, item in sent if t >= end), None)
    if first is None or first[1] not in arrival:
        return None
    t_sent, item = first
    return round(max(0.0, arrival[item] - t_sent), 3)
