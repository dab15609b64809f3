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
    records); ``timestamp`` is when the server stored it (Unix seconds);
    ``reconstructed`` is true when a reconstructor made the item because the
    real one was lost.

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

    @property
    def key(self) -> str | None:
        """The partition key (``Diaspora-Key`` header), if the producer set one."""
        return self.headers.get(H.KEY)

    @property
    def producer(self) -> str | None:
        """Id of the actor that emitted this item (``Diaspora-Actor``), if any."""
        return self.headers.get(H.ACTOR)
