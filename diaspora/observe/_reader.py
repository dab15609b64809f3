"""Reading the events stream as typed, timed events, filtered the way an operator asks.

:func:`read_events` replays what ``DIASPORA_EVENTS`` still holds (from a
time or a sequence) and, with ``follow``, goes on with live events, across
reconnects of the fabric. Each is an :class:`Observed`: the typed event, its
time and its stream sequence. :class:`EventFilter` keeps the ones that match
a category, an actor, a site, a kind and a time range.

>>> from diaspora.events import Crashed
>>> f = EventFilter(category="actor", kind="crashed")
>>> f.matches(Observed(seq=1, time=0.0, event=Crashed(name="root.sum", reason="x")))
True
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from diaspora import codec
from diaspora.errors import DecodeError
from diaspora.events import Event, UnknownEvent, decode_record
from diaspora.fabric import EventFeed, Fabric, event_feed

__all__ = [
    "EventFilter",
    "Observed",
    "ObservedEvents",
    "actor_of",
    "category_of",
    "decode_observed",
    "kind_of",
    "read_events",
]


@dataclass(frozen=True, slots=True)
class Observed:
    """One event read from the stream: ``time`` is when it was emitted (Unix seconds)."""

    seq: int
    time: float
    event: Event

    def record(self) -> dict[str, Any]:
        """The wire record, with the ``seq`` it has in the events stream."""
        return {"seq": self.seq, **self.event.record(at=self.time)}


def category_of(event: Event) -> str:
    """The event's category (an unknown kind's own)."""
    return event.of_category if isinstance(event, UnknownEvent) else event.category


def kind_of(event: Event) -> str:
    """The event's kind (an unknown kind's own)."""
    return event.of_kind if isinstance(event, UnknownEvent) else event.kind


def actor_of(event: Event) -> str:
    """Whom the event is about: an actor id, or ``<supervisor>.<child>`` for supervision.

    >>> from diaspora.events import Restarted
    >>> actor_of(Restarted(name="root", child="sum", incarnation=1, attempt=1, cause="sum"))
    'root.sum'
    """
    child = getattr(event, "child", None)
    if category_of(event) == "supervision" and isinstance(child, str):
        return f"{event.name}.{child}"
    return event.name


def _site_of(event: Event) -> str | None:
    if category_of(event) == "link":
        return event.name
    site = event.fields().get("site")
    return site if isinstance(site, str) else None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to keep; ``None`` keeps any. ``actor`` and ``site`` take globs (``root.*``).

    ``since``/``until`` are Unix seconds (inclusive).
    """

    category: str | None = None
    actor: str | None = None
    site: str | None = None
    kind: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, seen: Observed) -> bool:
        """Whether ``seen`` passes every criterion that is set."""
        event = seen.event
        if self.category is not None and category_of(event) != self.category:
            return False
        if self.kind is not None and kind_of(event) != self.kind:
            return False
        if self.since is not None and seen.time < self.since:
            return False
        if self.until is not None and seen.time > self.until:
            return False
        if self.actor is not None:
            names = {actor_of(event), event.name}
            if not any(fnmatch.fnmatchcase(n, self.actor) for n in names):
                return False
        if self.site is not None:
            site = _site_of(event)
            if site is None or not fnmatch.fnmatchcase(site, self.site):
                return False
        return True

    def subject(self) -> str:
        """The narrowest events subject the server can filter by (a category only)."""
        category = self.category or "*"
        return "diaspora.events.>" if category == "*" else f"diaspora.events.{category}.>"


def decode_observed(seq: int, timestamp: float, payload: bytes) -> Observed | None:
    """The typed event of one stored record (``None`` when it is not a record)."""
    try:
        record = codec.decode(payload)
    except DecodeError:
        return None
    if not isinstance(record, Mapping):
        return None
    at = record.get("time")
    when = float(at) if isinstance(at, int | float) else timestamp
    return Observed(seq=seq, time=when, event=decode_record(record))


class ObservedEvents:
    """The typed events of a feed that pass a filter: ``async for seen in events``."""

    def __init__(self, feed: EventFeed, where: EventFilter, follow: bool) -> None:
        self._feed = feed
        self._where = where
        self._follow = follow

    def __aiter__(self) -> ObservedEvents:
        return self

    async def __anext__(self) -> Observed:
        where = self._where
        while True:
            msg = await self._feed.__anext__()
            seen = decode_observed(msg.seq, msg.timestamp, msg.payload)
            if seen is None:
                continue
            if where.until is not None and msg.timestamp > where.until + 5.0 and not self._follow:
                raise StopAsyncIteration
            if where.matches(seen):
                return seen


@contextlib.asynccontextmanager
async def read_events(
    fabric: Fabric,
    *,
    follow: bool = False,
    where: EventFilter | None = None,
    start_seq: int | None = None,
) -> AsyncIterator[ObservedEvents]:
    """The events the stream holds (from ``where.since`` or ``start_seq``), then live ones.

    Without ``follow``, the events end at the last one stored when the read
    started, or at the first one past ``where.until``.

    >>> async def crashes(fabric: Fabric) -> list[Observed]:
    ...     async with read_events(fabric, where=EventFilter(kind="crashed")) as events:
    ...         return [seen async for seen in events]
    """
    where = where or EventFilter()
    # a little before: emitters' clocks and the server's differ; the filter is exact
    since = None if where.since is None else where.since - 5.0
    async with event_feed(
        fabric, where.subject(), start_seq=start_seq, since=since, follow=follow
    ) as feed:
        yield ObservedEvents(feed, where, follow)
