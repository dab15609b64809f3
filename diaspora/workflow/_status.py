"""What ``diaspora run`` tells its user: status lines and a periodic one-line summary.

:class:`RunStatus` writes one line per step (``connecting``, ``running``,
``stopped``) and, while the tree runs, a ``summary`` line every ``every``
seconds: inputs handled and outputs emitted (from the actors'
``checkpointed`` events, so up to a checkpoint interval behind), restarts
(``restarted`` supervision events) and lag (what the actors' durable
consumers hold that is not acknowledged yet, asked of the server). Text
lines go to ``out`` (``diaspora run``: stderr, beside the logs), JSON lines
(``json=True``: one object a line with a ``"status"`` key) likewise
(``diaspora run --json``: stdout); ``quiet=True`` writes nothing.

>>> import io
>>> out = io.StringIO()
>>> status = RunStatus(out=out)
>>> status.say("connecting", "connecting to nats://127.0.0.1:4222", url="nats://127.0.0.1:4222")
>>> out.getvalue()
'diaspora: connecting to nats://127.0.0.1:4222\\n'
>>> status.count(Restarted(name="root", child="sum", incarnation=2, attempt=1, cause="x"))
>>> status.summary_fields(lag=3)
{'handled': 0, 'outputs': 0, 'restarts': 1, 'lag': 3}
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO

import anyio

from diaspora import codec
from diaspora.actor._mailbox import consumer_name
from diaspora.errors import DecodeError
from diaspora.events import (
    EVENTS_PREFIX,
    Checkpointed,
    Event,
    Restarted,
    Started,
    Stopped,
    decode_record,
)
from diaspora.log import get_logger

if TYPE_CHECKING:
    from diaspora.fabric import Fabric, Inbound

__all__ = ["RunStatus"]

_PREFIX: Final = "diaspora: "


@dataclass(slots=True)
class _Counts:
    """One actor's inputs handled and outputs emitted: earlier starts, and the current one."""

    banked_handled: int = 0
    banked_emitted: int = 0
    handled: int = 0
    emitted: int = 0

    def restart(self) -> None:
        self.banked_handled += self.handled
        self.banked_emitted += self.emitted
        self.handled = self.emitted = 0


class RunStatus:
    """Status and summary lines of one ``diaspora run`` (see the module docstring)."""

    def __init__(self, *, out: TextIO | None, json: bool = False, quiet: bool = False) -> None:
        self._out = out
        self._json = json
        self._quiet = quiet
        self._actors: dict[str, _Counts] = {}
        self._restarts = 0

    def say(self, status: str, text: str, **fields: Any) -> None:
        """Write one line: ``text`` (prefixed ``diaspora:``), or ``fields`` as JSON."""
        if self._quiet or self._out is None:
            return
        line = jsonlib.dumps({"status": status, **fields}) if self._json else _PREFIX + text
        print(line, file=self._out, flush=True)

    def count(self, event: Event) -> None:
        """Take one event into the counts."""
        if isinstance(event, Restarted):
            self._restarts += 1
        elif isinstance(event, Started):
            self._actors.setdefault(event.name, _Counts()).restart()
        elif isinstance(event, Checkpointed):
            counts = self._actors.setdefault(event.name, _Counts())
            counts.handled = max(counts.handled, event.handled)
            counts.emitted = max(counts.emitted, event.emitted)
        elif isinstance(event, Stopped):
            counts = self._actors.setdefault(event.name, _Counts())
            counts.handled = max(counts.handled, event.stats.get("handled", 0))
            counts.emitted = max(counts.emitted, event.stats.get("emitted", 0))

    def summary_fields(self, *, lag: int | None) -> dict[str, Any]:
        """The summary's numbers: ``handled``, ``outputs``, ``restarts``, ``lag``."""
        return {
            "handled": sum(c.banked_handled + c.handled for c in self._actors.values()),
            "outputs": sum(c.banked_emitted + c.emitted for c in self._actors.values()),
            "restarts": self._restarts,
            "lag": lag,
        }

    def summary(self, *, lag: int | None) -> None:
        """Write the summary line."""
        fields = self.summary_fields(lag=lag)
        shown = "?" if lag is None else str(lag)
        self.say(
            "summary",
            f"{fields['handled']} inputs handled, {fields['outputs']} outputs, "
            f"{fields['restarts']} restarts, lag {shown}",
            **fields,
        )

    @asynccontextmanager
    async def watching(self, fabric: Fabric) -> AsyncIterator[None]:
        """Count the fabric's events while the body runs."""

        async def on_event(msg: Inbound) -> None:
            try:
                record = codec.decode(msg.data)
            except DecodeError:
                return
            if isinstance(record, Mapping):
                self.count(decode_record(record))

        async with fabric.subscription(f"{EVENTS_PREFIX}.>", on_event, flush=True):
            yield

    async def summaries(
        self, fabric: Fabric, actors: Mapping[str, tuple[str, ...]], every: float
    ) -> None:
        """Write a summary every ``every`` seconds, forever (cancel to stop)."""
        while True:
            await anyio.sleep(every)
            try:
                lag = await consumer_lag(fabric, actors)
            except Exception as exc:  # a summary never stops the tree
                get_logger().info("summary_lag_unknown", error=repr(exc))
                lag = None
            self.summary(lag=lag)


async def consumer_lag(fabric: Fabric, actors: Mapping[str, tuple[str, ...]]) -> int | None:
    """Inputs stored but not acknowledged yet, over every actor's durable consumers.

    ``None`` when the server answered for none of them (it is down, or no
    actor has created its consumer yet).
    """
    total = 0
    answered = False
    for actor, inputs in actors.items():
        for subject in inputs:
            backlog = await fabric.consumer_backlog(subject, consumer_name(actor, subject))
            if backlog is not None:  # server away, or no consumer yet: this one is not counted
                answered = True
                total += backlog
    return total if answered else None
