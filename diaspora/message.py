"""What an actor's ``handle`` receives: one decoded item of one input subject."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diaspora.errors import DecodeError
from diaspora.events import EVENTS_PREFIX, Event, decode_record
from diaspora.fabric import headers as H

__all__ = ["Message"]


@dataclass(frozen=True, slots=True)
class Message:
    """One input item, decoded.

    ``seq`` is the JetStream stream sequence (the position a checkpoint
    records; 0 for an item that did not come from the stream); ``timestamp``
    is when the server stored it (Unix seconds); ``replayed`` is true for an
    item replayed from its producer's history because the stream had lost it,
    ``reconstructed`` when a reconstructor made it because nobody had it.

    >>> msg = Message(data={"x": 1}, subject="numbers", seq=7, headers={"Diaspora-Key": "a"})
    >>> msg.data["x"], msg.key, msg.reconstructed
    (1, 'a', False)
    """

    data: Any
    subject: str
    seq: int
    headers: Mapping[str, str] = field(default_factory=dict)
    timestamp: float = 0.0
    reconstructed: bool = False
    payload: bytes = b""
    replayed: bool = False

    @property
    def key(self) -> str | None:
        """The partition key (``Diaspora-Key`` header), if the producer set one."""
        return self.headers.get(H.KEY)

    @property
    def item(self) -> int | None:
        """The producer's own number for this item (``Diaspora-Item``), if any."""
        return H.item_number(self.headers)

    @property
    def producer(self) -> str | None:
        """Id of the actor that emitted this item (``Diaspora-Actor``), if any."""
        return self.headers.get(H.ACTOR)

    @property
    def event(self) -> Event:
        """The typed event a message of an event input carries (``Lag``, ``Crashed``...).

        ``subject`` is then the input's pattern; the event says whom it is
        about (``event.name``) and its own subject (``event.subject_name``).
        A kind this version does not know is an
        :class:`~diaspora.events.UnknownEvent`. Raises
        :class:`~diaspora.errors.DecodeError` for a message that is not an event.

        >>> record = {"category": "actor", "name": "sum", "kind": "lag", "time": 0.0, "lag": 7}
        >>> Message(data=record, subject="diaspora.events.actor.*.lag", seq=3).event
        Lag(name='sum', lag=7, catching_up=True)
        """
        if not self.subject.startswith(EVENTS_PREFIX + ".") or not isinstance(self.data, Mapping):
            raise DecodeError(
                f"message {self.subject!r} seq {self.seq} is not an event record: "
                f"Message.event is for event inputs (patterns under {EVENTS_PREFIX + '.'!r}) "
                "whose payloads are event maps"
            )
        return decode_record(self.data)
