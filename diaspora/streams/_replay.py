"""Replay beyond the broker: a producer serves its history over NATS request/reply.

When a consumer needs items that JetStream no longer holds, it asks the
producer: :class:`HistoryServer` answers from a
:class:`~diaspora.streams._history.HistoryBuffer`, :func:`fetch_history`
asks and yields the items in order, with a
:class:`~diaspora.streams._history.Gap` for each range nobody has.

>>> import anyio
>>> from diaspora.fabric import Fabric
>>> from diaspora.streams._history import HistoryBuffer
>>> async def main() -> None:
...     async with Fabric(events_stream=False) as fabric:
...         history = HistoryBuffer()
...         for n in (1, 2, 4):
...             history.add("edge1.patterns", n, b"frame%d" % n)
...         async with HistoryServer(fabric, "edge1.detector", history):
...             async for x in fetch_history(fabric, "edge1.detector", "edge1.patterns", 1, 5):
...                 print(x)
>>> anyio.run(main)
HistoryItem(subject='edge1.patterns', item=1, payload=b'frame1', headers={})
HistoryItem(subject='edge1.patterns', item=2, payload=b'frame2', headers={})
Gap(subject='edge1.patterns', first=3, last=3)
HistoryItem(subject='edge1.patterns', item=4, payload=b'frame4', headers={})
Gap(subject='edge1.patterns', first=5, last=5)

Wire protocol (version 1)
-------------------------

A plain NATS client can implement either side. Every body is one msgpack
map (strings as ``str``, payloads as ``bin``).

**Subject.** ``diaspora.replay.<producer token>``, where the token is the
producer's actor id with ``.``, ``*``, ``>`` and whitespace replaced by
``_`` (:func:`replay_subject`). Requests carry a reply inbox (NATS
request/reply); a ``503`` no-responders status, or no answer within the
client's timeout, means the producer's history is unavailable.

**Request.** ``{"v": 1, "subject": str, "first": int, "last": int,
"max_bytes": int (optional)}`` asks for items ``first..last`` (inclusive,
``0 <= first <= last``) of ``subject``. ``max_bytes`` caps one reply's
size, payloads and headers (default 4 MiB, never above the server's
``max_payload`` less 4 KiB); a reply always carries at least one item when
one is available, even a larger one, so items up to the server's inline
limit (its ``max_payload`` less header room) replay.

**Reply.** ``{"v": 1, "subject": str, "first": int, "last": int,
"items": [[item, {header: value}, payload], ...], "missing": [[first,
last], ...], "next": int | nil, "have": [oldest, newest] | nil}``. The reply
covers ``first..last`` — the request's ``first`` up to where it stopped.
``items`` are the held items of that range in increasing order;
``missing`` lists, in order, the ranges of it the producer does not have
(never emitted, evicted, corrupt on disk, or too large for one NATS
message). ``next`` is the first item not covered yet: send the same
request again with ``first = next`` until ``next`` is nil (a client may
send it as soon as the reply arrives, before handling the items, as
:func:`fetch_history` does). ``have`` is the range the producer holds for
the subject now. An invalid request, or a producer whose history is closed,
gets ``{"v": 1, "error": str}``. If two processes serve the same producer,
each request gets two replies: keep the first whose ``first`` is the one
asked for, drop the others.
"""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
import msgpack
from anyio.abc import TaskGroup, TaskStatus

from diaspora import codec
from diaspora.errors import DiasporaError, FabricUnavailable, ReplayError, ReplayUnavailable
from diaspora.fabric import Inbound, Inbox
from diaspora.fabric._naming import RESERVED_PREFIX, token
from diaspora.log import get_logger
from diaspora.streams._history import Gap, HistoryBuffer, HistoryError, HistoryItem

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = [
    "DEFAULT_REPLY_BYTES",
    "PROTOCOL_VERSION",
    "REPLAY_PREFIX",
    "HistoryServer",
    "ReplayError",
    "ReplayResult",
    "ReplayUnavailable",
    "collect_history",
    "fetch_history",
    "replay_subject",
]

PROTOCOL_VERSION: Final = 1
REPLAY_PREFIX: Final = f"{RESERVED_PREFIX}replay"
#: Payload bytes per reply unless the request asks otherwise.
DEFAULT_REPLY_BYTES: Final = 4 * 1024 * 1024
_REPLY_ROOM: Final = 4096  # msgpack framing of a reply, beyond the items' estimates
_ITEM_OVERHEAD: Final = 32
_HEADER_OVERHEAD: Final = 8
_SPLICE_FROM: Final = 16 * 1024  # payloads from this size are joined, not packed
_BIN32 = struct.Struct(">BI")  # msgpack bin 32 header


def replay_subject(producer_id: str) -> str:
    """The subject a producer's :class:`HistoryServer` answers on.

    >>> replay_subject("edge1.detector")
    'diaspora.replay.edge1_detector'
    """
    return f"{REPLAY_PREFIX}.{token(producer_id)}"


# -- the server ----------------------------------------------------------------------------


class HistoryServer:
    """Answers replay requests for one producer from its :class:`HistoryBuffer`.

    A supervisor-style runnable (``await run(task_status=...)``,
    ``request_stop()``), or an async context manager serving while inside.
    """

    def __init__(self, fabric: Fabric, producer_id: str, buffer: HistoryBuffer) -> None:
        self._fabric = fabric
        self.producer_id = producer_id
        self.buffer = buffer
        self.subject = replay_subject(producer_id)
        self.stats: dict[str, int] = {"requests": 0, "items": 0, "bytes": 0, "errors": 0}
        self._stopping = False
        self._waiting: anyio.CancelScope | None = None
        self._tg: TaskGroup | None = None
        self._log = get_logger(actor=producer_id, subject=self.subject)

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self.run)
        except BaseException as exc:
            await self._tg.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        tg, self._tg = self._tg, None
        assert tg is not None
        self.request_stop()
        return await tg.__aexit__(et, ev, tb)

    def request_stop(self) -> None:
        """Stop after the request being answered, if any (safe to call repeatedly)."""
        self._stopping = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, report started, and answer requests until :meth:`request_stop`."""
        # requests are answered one at a time, here, not in the subscription's callback
        send, receive = anyio.create_memory_object_stream[Inbound](1)
        try:
            async with self._fabric.subscription(self.subject, send.send, flush=True):
                self._log.info("replay_serving")
                task_status.started()
                while not self._stopping:
                    with anyio.CancelScope() as self._waiting:
                        msg = await receive.receive()
                    self._waiting = None
                    if self._stopping:
                        break
                    await self._answer(msg)
        finally:
            self._waiting = None
            send.close()
            receive.close()
            self._log.info("replay_stopped", **self.stats)

    async def _answer(self, msg: Inbound) -> None:
        if not msg.reply:
            self._log.debug("replay_request_without_reply")
            return
        self.stats["requests"] += 1
        try:
            reply = self._reply(msg.data)
        except ReplayError as exc:
            self.stats["errors"] += 1
            self._log.warning("replay_bad_request", reason=str(exc))
            reply = {"v": PROTOCOL_VERSION, "error": str(exc)}
        except HistoryError as exc:  # closed under us: say so rather than go silent
            self.stats["errors"] += 1
            self._log.warning("replay_history_unavailable", reason=str(exc))
            reply = {"v": PROTOCOL_VERSION, "error": f"history unavailable: {exc}"}
        body = _encode_reply(reply)
        if len(body) > self._fabric.max_payload:  # the estimates are conservative: a bug
            self.stats["errors"] += 1
            self._log.error("replay_reply_too_large", size=len(body))
            body = codec.encode(
                {"v": PROTOCOL_VERSION, "error": f"reply of {len(body)} bytes exceeds max_payload"}
            )
        try:
            await msg.respond(body)
        except FabricUnavailable as exc:
            self.stats["errors"] += 1
            self._log.warning("replay_reply_failed", reason=repr(exc))

    def _reply(self, data: bytes) -> dict[str, Any]:
        request = _parse_request(data)
        subject, first, last = request["subject"], request["first"], request["last"]
        hard_cap = self._fabric.max_payload - _REPLY_ROOM
        cap = min(request.get("max_bytes", DEFAULT_REPLY_BYTES), hard_cap)
        items: list[list[Any]] = []
        missing: list[list[int]] = []
        size = 0
        covered = last
        next_item: int | None = None
        for x in self.buffer.range(subject, first, last):
            if isinstance(x, Gap):
                _add_missing(missing, x.first, x.last)
                size += _ITEM_OVERHEAD
                continue
            estimate = _estimate(x)
            if estimate > hard_cap:
                self._log.warning("replay_item_too_large", item=x.item, size=estimate)
                _add_missing(missing, x.item, x.item)
                continue
            if items and size + estimate > cap:
                covered, next_item = x.item - 1, x.item
                break
            items.append([x.item, x.headers, x.payload])
            size += estimate
        self.stats["items"] += len(items)
        self.stats["bytes"] += size
        oldest, newest = self.buffer.first_item(subject), self.buffer.last_item(subject)
        return {
            "v": PROTOCOL_VERSION,
            "subject": subject,
            "first": first,
            "last": covered,
            "items": items,
            "missing": missing,
            "next": next_item,
            "have": [oldest, newest] if oldest is not None else None,
        }


def _encode_reply(reply: dict[str, Any]) -> bytes:
    """The msgpack map ``reply``, copying each large payload once.

    Packing it whole would copy the payloads several times over as the
    packer's buffer grows; a joined list of parts costs one copy.
    """
    packer = msgpack.Packer(use_bin_type=True)
    parts: list[bytes] = [packer.pack_map_header(len(reply))]
    for key, value in reply.items():
        parts.append(packer.pack(key))
        if key != "items":
            parts.append(packer.pack(value))
            continue
        parts.append(packer.pack_array_header(len(value)))
        for entry in value:
            payload = entry[2]
            if len(payload) < _SPLICE_FROM:
                parts.append(packer.pack(entry))
            else:
                parts += (
                    packer.pack_array_header(3),
                    packer.pack(entry[0]),
                    packer.pack(entry[1]),
                    _BIN32.pack(0xC6, len(payload)),
                    payload,
                )
    return b"".join(parts)


def _estimate(x: HistoryItem) -> int:
    headers = x.headers
    return (
        len(x.payload)
        + _ITEM_OVERHEAD
        + sum(map(len, headers))
        + sum(map(len, headers.values()))
        + _HEADER_OVERHEAD * len(headers)
    )


def _add_missing(missing: list[list[int]], first: int, last: int) -> None:
    if missing and missing[-1][1] == first - 1:
        missing[-1][1] = last
    else:
        missing.append([first, last])


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_request(data: bytes) -> dict[str, Any]:
    try:
        request = codec.decode(data)
    except DiasporaError as exc:
        raise ReplayError(f"request is not msgpack: {exc}") from exc
    if not isinstance(request, dict):
        raise ReplayError(f"request must be a map, not {type(request).__name__}")
    version = request.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise ReplayError(f"protocol version {version!r} unsupported; this server speaks 1")
    unknown = sorted(set(request) - {"v", "subject", "first", "last", "max_bytes"}, key=str)
    if unknown:
        raise ReplayError(f"unknown request field(s) {unknown}")
    if not isinstance(request.get("subject"), str) or not request["subject"]:
        raise ReplayError(f"request.subject: {request.get('subject')!r} is not a subject")
    first, last = request.get("first"), request.get("last")
    if not _is_int(first) or not _is_int(last) or not 0 <= first <= last:  # type: ignore[operator]
        raise ReplayError(
            f"request.first/last: {first!r}..{last!r} must be ints, 0 <= first <= last"
        )
    if "max_bytes" in request and (not _is_int(request["max_bytes"]) or request["max_bytes"] < 1):
        raise ReplayError(f"request.max_bytes: {request['max_bytes']!r} must be an int >= 1")
    return request


# -- the client ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay returned: the items, in order, and the gaps nobody had."""

    items: list[HistoryItem] = field(default_factory=list)
    missing: list[Gap] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


async def fetch_history(
    fabric: Fabric,
    producer_id: str,
    subject: str,
    first: int,
    last: int,
    *,
    timeout: float = 5.0,
    max_bytes: int | None = None,
) -> AsyncGenerator[HistoryItem | Gap, None]:
    """Ask ``producer_id`` for items ``first..last`` of ``subject``; yield them in order.

    Every item number in the range is accounted for exactly once: as a
    :class:`HistoryItem`, or inside a :class:`Gap`. Raises
    :class:`ReplayUnavailable` when no producer answers a request within
    ``timeout`` seconds, :class:`ReplayError` when it refuses the request.

    The next chunk is requested before this one's items are yielded, so the
    producer works while the caller does. The iterator holds a subscription
    until it is exhausted or closed: stop early inside
    ``contextlib.aclosing(fetch_history(...))``.
    """
    if not (_is_int(first) and _is_int(last) and 0 <= first <= last):
        raise ValueError(f"fetch_history: {first!r}..{last!r} must be ints, 0 <= first <= last")
    target = replay_subject(producer_id)
    where = f"replay of {subject!r} {first}..{last} from producer {producer_id!r}"
    async with fabric.inbox() as inbox:
        async for x in _fetch(inbox, target, where, subject, first, last, timeout, max_bytes):
            yield x


async def _fetch(
    inbox: Inbox,
    target: str,
    where: str,
    subject: str,
    first: int,
    last: int,
    timeout: float,
    max_bytes: int | None,
) -> AsyncGenerator[HistoryItem | Gap, None]:
    async def ask(position: int) -> None:
        request: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "subject": subject,
            "first": position,
            "last": last,
        }
        if max_bytes is not None:
            request["max_bytes"] = max_bytes
        await inbox.send(target, codec.encode(request))

    async def answer(position: int) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = await inbox.next(timeout=max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise ReplayUnavailable(
                    f"{where}: no answer on {target!r} within {timeout}s; the producer may "
                    "be overloaded or cut off: retry later, or raise the timeout"
                ) from None
            if msg.no_responders:
                raise ReplayUnavailable(
                    f"{where}: nobody serves {target!r}; the producer is not running or keeps "
                    "no history (run a HistoryServer for it), so these items are lost"
                )
            reply = _parse_reply(msg.data, position, last, where)
            if reply is not None:
                return reply

    await ask(first)
    position: int | None = first
    while position is not None:
        reply = await answer(position)
        covered, position = reply["last"], reply["next"]
        if position is not None:
            await ask(position)
        expected = reply["first"]
        for entry in reply["items"]:
            if (
                type(entry) is not list
                or len(entry) != 3
                or not _is_int(number := entry[0])
                or not expected <= number <= covered
                or type(entry[1]) is not dict
                or type(entry[2]) is not bytes
            ):
                raise ReplayError(f"{where}: malformed or out-of-order item {entry!r:.100}")
            if number > expected:
                yield Gap(subject, expected, number - 1)
            yield HistoryItem(subject, number, entry[2], entry[1])
            expected = number + 1
        if expected <= covered:
            yield Gap(subject, expected, covered)


def _parse_reply(data: bytes, first: int, last: int, where: str) -> dict[str, Any] | None:
    """The reply to the request for ``first..last``; ``None`` for a stale or duplicate one."""
    try:
        reply = codec.decode(data)
    except DiasporaError as exc:
        raise ReplayError(f"{where}: undecodable reply: {exc}") from exc
    if not isinstance(reply, dict):
        raise ReplayError(f"{where}: reply is a {type(reply).__name__}, not a map")
    if "error" in reply:
        raise ReplayError(f"{where}: the producer refused: {reply['error']}")
    if reply.get("first") != first:  # to an earlier request, from a second responder
        return None
    covered: Any = reply.get("last")
    next_item: Any = reply.get("next")
    if not _is_int(covered) or not first <= covered <= last:
        raise ReplayError(f"{where}: reply covers {first}..{covered!r}")
    if next_item is not None and next_item != covered + 1:
        raise ReplayError(f"{where}: reply's next {next_item!r} does not follow {covered}")
    if next_item is None and covered != last:
        raise ReplayError(f"{where}: reply stops at {covered} with nothing next")
    if not isinstance(reply.get("items"), list):
        raise ReplayError(f"{where}: reply has no item list")
    return reply


async def collect_history(
    fabric: Fabric,
    producer_id: str,
    subject: str,
    first: int,
    last: int,
    *,
    timeout: float = 5.0,
    max_bytes: int | None = None,
) -> ReplayResult:
    """:func:`fetch_history` gathered into one :class:`ReplayResult` (for small ranges)."""
    result = ReplayResult()
    async for x in fetch_history(
        fabric, producer_id, subject, first, last, timeout=timeout, max_bytes=max_bytes
    ):
        if isinstance(x, Gap):
            result.missing.append(x)
        else:
            result.items.append(x)
    return result
