"""The last inbound stages: partition filter, decode, and ``handle`` with its deadline.

While ``handle`` runs, :data:`HANDLING` holds the input it is handling (its
:class:`~diaspora.stage.InputItem`, which counts its outputs): ``emit``
reads it to derive each output's message id, so nothing about the message at
hand is kept on the runtime itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import zlib
from typing import TYPE_CHECKING, Any

import anyio

from diaspora import codec
from diaspora.errors import DecodeError, HandlerHung, Stale
from diaspora.events import ItemStale
from diaspora.fabric import headers as H
from diaspora.message import Message
from diaspora.stage import Host, InputItem, Next, Stage

if TYPE_CHECKING:
    from diaspora.actor._actor import Actor
    from diaspora.actor._poison import Poison

__all__ = ["HANDLING", "Decode", "HandleStage", "HandlerHung", "Partition"]


#: The input ``handle`` is working on (its ``outputs`` counts what it emitted so far).
HANDLING: contextvars.ContextVar[InputItem | None] = contextvars.ContextVar(
    "diaspora_handling", default=None
)


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (CRC-32, stable across processes).

    >>> partition_of("sensor-7", 4)
    2
    """
    return zlib.crc32(key.encode()) % partitions


class Partition(Stage):
    """Passes on only the items of partition ``k`` of ``n`` (keyed scale-out).

    The key is ``Diaspora-Key``, else ``<producer>#<item>``, else the stream sequence.
    """

    name = "partition"

    def __init__(self, k: int, n: int) -> None:
        self.k, self.n = k, n

    def mine(self, item: InputItem) -> bool:
        headers = item.headers
        key = headers.get(H.KEY)
        if key is None:
            producer, number = headers.get(H.ACTOR), headers.get(H.ITEM)
            key = f"{producer}#{number}" if producer and number else str(item.seq)
        return partition_of(key, self.n) == self.k

    async def inbound(self, item: InputItem, next: Next) -> None:
        if item.reconstructed or self.mine(item):
            await next(item)


class Decode(Stage):
    """Turns the payload (or its object-store blob) into a :class:`~diaspora.Message`.

    An undecodable stream message is dead-lettered; an undecodable replayed
    item is logged and skipped (it never was in the stream).
    """

    name = "decode"

    def __init__(self) -> None:
        self._host: Host | None = None

    async def setup(self, host: Host) -> None:
        self._host = host

    async def inbound(self, item: InputItem, next: Next) -> None:
        if item.message is None and not self.decode_now(item):
            host = self._host
            assert host is not None
            payload = item.payload
            try:
                if H.BLOB in item.headers:
                    payload = await host.fabric.read_blob(item.headers[H.BLOB])
                data = codec.decode(payload)
            except DecodeError as exc:
                if item.replayed:
                    host.log.warning(
                        "replayed_item_undecodable",
                        subject=item.subject,
                        producer=item.producer,
                        item=item.item,
                        error=str(exc),
                    )
                else:
                    await host.dead_letter(item, f"undecodable payload: {exc}", "", 0)
                return
            _set_message(item, data, payload)
        await next(item)

    def decode_now(self, item: InputItem) -> bool:
        """Decode an inline payload in place, without awaiting; ``False`` when that takes
        the full path (a blob to fetch, or an undecodable payload to deal with)."""
        if H.BLOB in item.headers:
            return False
        try:
            data = codec.decode(item.payload)
        except DecodeError:
            return False
        _set_message(item, data, item.payload)
        return True


def _set_message(item: InputItem, data: Any, payload: bytes) -> None:
    item.message = Message(
        data=data,
        subject=item.subject,
        seq=item.seq,
        headers=item.headers,
        timestamp=item.timestamp,
        reconstructed=item.reconstructed or item.headers.get(H.RECONSTRUCTED) == "1",
        payload=payload,
        replayed=item.replayed,
    )


class HandleStage(Stage):
    """Calls the actor's ``handle`` under its deadline and the replica's handle guard.

    When ``handle`` raises, the poison stage notes the failure and says
    whether to call it again in place (``on_poison = "retry"``), or
    dead-letters the input, or crashes the actor (``"crash"``). A
    :class:`~diaspora.errors.Stale` (a view item whose source message
    expired) is not a failure: retrying cannot help, so the item is dropped
    with an :class:`~diaspora.events.ItemStale` event. Given the ``decode``
    stage (when no stage runs between the two), it decodes inline payloads
    itself, one coroutine less per message; a blob or an undecodable
    payload still takes the decode stage's path.
    """

    name = "handle"

    def __init__(
        self,
        actor: Actor,
        poison: Poison,
        guard: contextlib.AbstractAsyncContextManager[Any],
        decode: Decode | None = None,
    ) -> None:
        self._actor = actor
        #: the decode stage it runs inline (set up by the runtime like any stage)
        self.decode = decode
        self._poison = poison
        self._guard = guard
        #: no replica lock: ``handle`` is called without entering a no-op context
        self._unguarded = isinstance(guard, contextlib.nullcontext)
        self._host: Host | None = None

    async def setup(self, host: Host) -> None:
        self._host = host

    async def inbound(self, item: InputItem, next: Next) -> None:
        host = self._host
        message = item.message
        if message is None:
            decode = self.decode
            assert decode is not None, "no stage decoded the item before handle"
            if not decode.decode_now(item):
                await decode.inbound(item, lambda it: self.inbound(it, next))  # a blob, or bad
                return
            message = item.message
        assert host is not None
        assert message is not None
        actor = self._actor
        deadline = actor.handle_deadline
        token = HANDLING.set(item)
        try:
            if deadline is None and self._unguarded:
                await actor.handle(message)
            else:
                await self._call(item, message)
        except Stale as exc:
            # a view item whose reference expired never loads again: drop it, say so, go on
            await host.event(
                ItemStale(
                    name=host.id, view=exc.view, version=exc.version, stream=exc.stream, seq=exc.seq
                )
            )
        except Exception as exc:
            if not await self._poison.failed(item, exc, self.again):
                return  # dead-lettered
        finally:
            HANDLING.reset(token)
        item.handled = True
        host.stats.handled += 1

    async def again(self, item: InputItem) -> None:
        """Call ``handle`` on ``item`` once more (a retry in place: outputs get the same ids)."""
        message = item.message
        assert message is not None
        item.outputs = 0  # a retry in place: the outputs get the same ids again
        token = HANDLING.set(item)
        try:
            await self._call(item, message)
        finally:
            HANDLING.reset(token)

    async def _call(self, item: InputItem, message: Message) -> None:
        """``handle`` under the replica's guard and the deadline."""
        host, actor = self._host, self._actor
        assert host is not None
        deadline = actor.handle_deadline
        async with self._guard:
            with anyio.move_on_after(math.inf if deadline is None else deadline) as scope:
                await actor.handle(message)
            if scope.cancelled_caught:
                raise HandlerHung(
                    f"actor {host.id!r}: handle of {item.source} ran past its deadline "
                    f"of {deadline}s"
                )
