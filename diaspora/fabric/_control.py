"""Control subjects: msgpack requests answered ``{"ok": ...}`` over core request/reply.

A running tree serves operations on ``diaspora.control.<what>.<name>.<op>``
(a supervisor's ``start_child``, an actor's ``migrate``). A request is a
msgpack map carrying a ``request`` id; the answer is ``{"ok": true, ...}``
or ``{"ok": false, "error": "..."}``. :func:`control_request` asks (and
turns every failure into an error naming the subject); :class:`Answerer`
serves, answering a request id seen before with its first answer again, so
a caller repeating a request after a crash gets one effect, not two (while
the serving process lives).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from diaspora import codec
from diaspora.errors import ControlError, DecodeError, DiasporaError, NoResponders
from diaspora.fabric._fabric import Fabric
from diaspora.fabric._inbound import Inbound

__all__ = ["Answerer", "control_request"]

#: Answers kept for repeated request ids (the oldest are forgotten first).
_REMEMBERED: Final = 10_000

Handler = Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]]


async def control_request(
    fabric: Fabric,
    subject: str,
    request: Mapping[str, Any],
    *,
    timeout: float,
    nobody: str,
    error: type[ControlError] = ControlError,
) -> dict[str, Any]:
    """Send ``request`` on ``subject``; the answer map when it says ``ok``.

    Raises ``error`` (a :class:`ControlError`) naming the subject when nobody
    serves it (the message adds ``nobody``: what should be running), nobody
    answers in ``timeout`` s, the answer is unreadable, or it says ``ok: false``.
    """
    try:
        answer = await fabric.request(subject, codec.encode(dict(request)), timeout=timeout)
    except NoResponders:
        raise error(f"{subject}: nobody serves it: {nobody}") from None
    except TimeoutError:
        raise error(f"{subject}: no answer within {timeout} s") from None
    try:
        reply = codec.decode(answer.data)
    except DecodeError as exc:
        raise error(f"{subject}: unreadable answer: {exc}") from exc
    if not isinstance(reply, dict) or not reply.get("ok"):
        found = reply.get("error") if isinstance(reply, dict) else reply
        raise error(f"{subject}: refused: {found}")
    return reply


class Answerer:
    """Serves control requests with ``handler(subject, request) -> answer map``.

    Use :meth:`handle` as the callback of ``fabric.subscription(...)``;
    ``answered(answer)`` is called once each answer is sent.
    """

    def __init__(
        self, handler: Handler, *, answered: Callable[[Mapping[str, Any]], None] | None = None
    ) -> None:
        self._handler = handler
        self._answered = answered
        self._answers: OrderedDict[str, bytes] = OrderedDict()

    async def handle(self, msg: Inbound) -> None:
        if not msg.reply:
            return
        request_id = None
        try:
            request = codec.decode(msg.data)
            request_id = request.get("request")
            if isinstance(request_id, str) and request_id in self._answers:
                await msg.respond(self._answers[request_id])
                return
            answer = await self._handler(msg.subject, request)
        except (DecodeError, AttributeError) as exc:
            answer = {"ok": False, "error": f"unreadable request: {exc}"}
        encoded = codec.encode(answer)
        if isinstance(request_id, str) and answer.get("ok"):
            self._answers[request_id] = encoded
            while len(self._answers) > _REMEMBERED:
                self._answers.popitem(last=False)
        with contextlib.suppress(DiasporaError):
            await msg.respond(encoded)
        if self._answered is not None:
            self._answered(answer)
