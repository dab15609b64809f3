"""Core-NATS messages as the layers above see them: :class:`Inbound` and :class:`Inbox`.

Values built from nats-py messages by :class:`~diaspora.fabric._connection.Connection`,
so no layer above ever holds a nats-py object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from diaspora.errors import FabricUnavailable
from diaspora.fabric import _jsapi

if TYPE_CHECKING:
    from diaspora.fabric._connection import Connection

__all__ = ["Inbound", "Inbox"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """One core-NATS message as a subscription callback receives it.

    ``reply`` is the subject a requester waits on (``""`` when none);
    answer with :meth:`respond`.
    """

    subject: str
    data: bytes
    headers: dict[str, str] | None
    reply: str
    _connection: Connection | None = field(default=None, repr=False, compare=False)

    @property
    def status(self) -> str | None:
        """The NATS status code of a protocol message (``"503"``: no responders), else ``None``."""
        if self.data or not self.headers:
            return None
        return self.headers.get(_jsapi.STATUS)

    @property
    def no_responders(self) -> bool:
        """Whether this is the server saying a request reached nobody."""
        return self.status == _jsapi.NO_RESPONDERS

    async def respond(self, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Answer the request this message carries.

        Raises ``ValueError`` when it carries no reply subject, and
        :class:`~diaspora.errors.FabricUnavailable` when the answer cannot be sent.
        """
        if not self.reply:
            raise ValueError(
                f"message on {self.subject!r} has no reply subject: it was published, "
                "not requested, so there is nobody to answer"
            )
        if self._connection is None:
            raise FabricUnavailable(f"message on {self.subject!r} is not bound to a fabric")
        if not await self._connection.publish_core(self.reply, data, headers):
            raise FabricUnavailable(
                f"answer to the request on {self.subject!r} not sent: the connection is down"
            )

    @classmethod
    def _of(cls, msg: Msg, connection: Connection | None) -> Inbound:
        return cls(msg.subject, msg.data, msg.headers, msg.reply or "", connection)


class Inbox:
    """A private reply subject: send requests from it, read their answers in order.

    For request/reply exchanges that get several answers per request, or that
    pipeline requests (ask for the next chunk before reading this one); see
    :meth:`diaspora.fabric.Fabric.inbox`.
    """

    def __init__(self, connection: Connection, subject: str, sub: Subscription) -> None:
        self._connection = connection
        self.subject = subject
        self._sub = sub

    async def send(self, subject: str, data: bytes) -> None:
        """Publish ``data`` to ``subject`` with this inbox as the reply subject.

        Raises :class:`~diaspora.errors.FabricUnavailable` when it cannot be sent.
        """
        try:
            await self._connection.client.publish(subject, data, reply=self.subject)
        except (nats.errors.Error, OSError) as exc:
            raise FabricUnavailable(f"request to {subject!r} not sent: {exc!r}") from exc

    async def next(self, timeout: float) -> Inbound:
        """The next answer; raises ``TimeoutError`` when none arrives within ``timeout`` s."""
        try:
            msg = await self._sub.next_msg(timeout=timeout)
        except nats.errors.TimeoutError:
            raise TimeoutError(f"no answer on {self.subject!r} within {timeout}s") from None
        return Inbound._of(msg, self._connection)
