"""What an actor's ``handle`` receives: one decoded item of one input subject."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
