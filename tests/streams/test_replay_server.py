"""Replay over a real nats-server: HistoryServer and fetch_history / collect_history."""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import pytest

from diaspora import codec
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric.headers import ITEM
from diaspora.streams._history import Gap, HistoryBuffer, HistoryItem
from diaspora.streams._replay import (
    HistoryServer,
    ReplayError,
    ReplayUnavailable,
    collect_history,
    fetch_history,
    replay_subject,
)

pytestmark = pytest.mark.anyio

PRODUCER = "edge1.detector"
SUBJECT = "edge1.patterns"
BIG = 4 * 1024 * 1024


def payload_of(n: int) -> bytes:
    size = BIG if n % 200 == 100 else 1000 + n % 7
    return n.to_bytes(4, "big") * (size // 4)


def headers_of(n: int) -> dict[str, str]:
    return {"Diaspora-Actor": PRODUCER, ITEM: str(n)}


async def replayed(
    fabric: Fabric, first: int, last: int, max_bytes: int | None = None
) -> list[object]:
    out: list[object] = []
    async for x in fetch_history(fabric, PRODUCER, SUBJECT, first, last, max_bytes=max_bytes):
        out.append(x.item if isinstance(x, HistoryItem) else x)
    return out


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "disk"])
async def test_replays_1000_items_with_4_mib_payloads_in_order(
    fabric: Fabric, tmp_path: Path, on_disk: bool
) -> None:
    history = HistoryBuffer(
        tmp_path if on_disk else None, memory_bytes=1024**2 if on_disk else 64 * 1024**2
    )
    with history:
        for n in range(1, 1001):
            history.add(SUBJECT, n, payload_of(n), headers_of(n))
        async with HistoryServer(fabric, PRODUCER, history) as server:
            got: list[HistoryItem] = []
            async for x in fetch_history(fabric, PRODUCER, SUBJECT, 1, 1000):
                assert isinstance(x, HistoryItem), x
                got.append(x)
        assert [x.item for x in got] == list(range(1, 1001))
        for x in got:
            assert x.payload == payload_of(x.item)
            assert x.headers == headers_of(x.item)
            assert x.subject == SUBJECT
        assert sum(len(x.payload) == BIG for x in got) == 5
        assert server.stats["requests"] >= 5  # chunked: no reply holds two 4 MiB items


async def _replays_a_payload_at_the_inline_limit(fabric: Fabric) -> None:
    with HistoryBuffer(memory_bytes=32 * 1024**2) as history:
        big = bytes(range(256)) * (fabric.inline_limit // 256)
        history.add(SUBJECT, 1, b"small")
        history.add(SUBJECT, 2, big, headers_of(2))
        history.add(SUBJECT, 3, b"small")
        async with HistoryServer(fabric, PRODUCER, history):
            result = await collect_history(fabric, PRODUCER, SUBJECT, 1, 3)
    assert result.complete
    assert [x.item for x in result.items] == [1, 2, 3]
    assert result.items[1].payload == big


async def test_a_payload_at_the_inline_limit_is_replayed(fabric: Fabric) -> None:
    await _replays_a_payload_at_the_inline_limit(fabric)


async def test_replay_batches_fit_a_standard_1_mib_server() -> None:
    async with EmbeddedServer(max_payload=1024 * 1024) as server, Fabric(server.url) as fabric:
        await _replays_a_payload_at_the_inline_limit(fabric)


async def test_missing_ranges_are_reported_in_order(fabric: Fabric) -> None:
    with HistoryBuffer(max_items=5) as history:
        for n in (1, 2, 3, 7, 8, 9, 10):
            history.add(SUBJECT, n, b"%d" % n)  # 1 and 2 are evicted by max_items
        async with HistoryServer(fabric, PRODUCER, history):
            assert await replayed(fabric, 1, 12) == [
                Gap(SUBJECT, 1, 2),
                3,
                Gap(SUBJECT, 4, 6),
                7,
                8,
                9,
                10,
                Gap(SUBJECT, 11, 12),
            ]
            result = await collect_history(fabric, PRODUCER, SUBJECT, 4, 6)
            assert result.items == []
            assert result.missing == [Gap(SUBJECT, 4, 6)]
            assert not result.complete
            assert await replayed(fabric, 1, 5, max_bytes=1) == [
                Gap(SUBJECT, 1, 2),
                3,
                Gap(SUBJECT, 4, 5),
            ]


async def test_wire_protocol_with_a_plain_nats_request(fabric: Fabric) -> None:
    with HistoryBuffer() as history:
        for n in (3, 4, 6):
            history.add(SUBJECT, n, b"p%d" % n, {ITEM: str(n)})
        async with HistoryServer(fabric, PRODUCER, history):
            request = {"v": 1, "subject": SUBJECT, "first": 1, "last": 9, "max_bytes": 1}
            msg = await fabric.request(
                "diaspora.replay.edge1_detector", codec.encode(request), timeout=5
            )
            assert codec.decode(msg.data) == {
                "v": 1,
                "subject": SUBJECT,
                "first": 1,
                "last": 3,
                "items": [[3, {ITEM: "3"}, b"p3"]],
                "missing": [[1, 2]],
                "next": 4,
                "have": [3, 6],
            }
            request = {"subject": SUBJECT, "first": 5, "last": 9}
            msg = await fabric.request(replay_subject(PRODUCER), codec.encode(request), timeout=5)
            reply = codec.decode(msg.data)
            assert reply["items"] == [[6, {ITEM: "6"}, b"p6"]]
            assert (reply["missing"], reply["last"], reply["next"]) == ([[5, 5], [7, 9]], 9, None)


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (b"\xc1", "not msgpack"),
        ([1, 2], "must be a map"),
        ({"v": 2, "subject": SUBJECT, "first": 1, "last": 2}, "version 2 unsupported"),
        ({"subject": SUBJECT, "first": 5, "last": 2}, "0 <= first <= last"),
        ({"subject": "", "first": 1, "last": 2}, "request.subject"),
        ({"subject": SUBJECT, "first": 1, "last": 2, "max_bytes": 0}, "request.max_bytes"),
        ({"subject": SUBJECT, "first": 1, "last": 2, "limit": 3}, "unknown request field"),
    ],
)
async def test_invalid_requests_get_an_error_reply(
    fabric: Fabric, request_: object, error: str
) -> None:
    with HistoryBuffer() as history:
        async with HistoryServer(fabric, PRODUCER, history) as server:
            body = request_ if isinstance(request_, bytes) else codec.encode(request_)
            msg = await fabric.request(replay_subject(PRODUCER), body, timeout=5)
            reply = codec.decode(msg.data)
            assert error in reply["error"]
            assert server.stats["errors"] == 1
            # the server keeps serving
            assert await replayed(fabric, 1, 1) == [Gap(SUBJECT, 1, 1)]


async def test_no_responder_raises_replay_unavailable_without_waiting(fabric: Fabric) -> None:
    with anyio.fail_after(3):  # far below the request timeout: NATS says "no responders"
        with pytest.raises(ReplayUnavailable, match=r"nobody serves 'diaspora\.replay\.nobody'"):
            await collect_history(fabric, "nobody", SUBJECT, 1, 10, timeout=30)


async def test_a_silent_server_raises_replay_unavailable_after_the_timeout(
    fabric: Fabric,
) -> None:
    sub = await fabric.nc.subscribe(replay_subject(PRODUCER))  # listens, never answers
    await fabric.nc.flush()
    with pytest.raises(ReplayUnavailable, match=r"no answer .* within 0\.2s") as caught:
        await collect_history(fabric, PRODUCER, SUBJECT, 1, 10, timeout=0.2)
    assert isinstance(caught.value, TimeoutError)
    await sub.unsubscribe()


async def test_a_refusal_from_the_producer_raises_replay_error(fabric: Fabric) -> None:
    async def refuse() -> None:
        async for msg in sub.messages:
            await msg.respond(codec.encode({"v": 1, "error": "history disabled"}))

    sub = await fabric.nc.subscribe(replay_subject(PRODUCER))
    async with anyio.create_task_group() as tg:
        tg.start_soon(refuse)
        with pytest.raises(ReplayError, match="the producer refused: history disabled"):
            await collect_history(fabric, PRODUCER, SUBJECT, 1, 10)
        tg.cancel_scope.cancel()
    await sub.unsubscribe()


async def test_a_closed_history_is_refused_not_crashed_on(fabric: Fabric) -> None:
    history = HistoryBuffer()
    async with HistoryServer(fabric, PRODUCER, history):
        history.close()
        with pytest.raises(ReplayError, match=r"history unavailable: .* is closed"):
            await collect_history(fabric, PRODUCER, SUBJECT, 1, 3)


async def test_items_evicted_while_replaying_become_gaps(fabric: Fabric) -> None:
    with HistoryBuffer(max_items=10) as history:
        for n in range(1, 11):
            history.add(SUBJECT, n, b"x" * 100)
        async with HistoryServer(fabric, PRODUCER, history):
            seen: list[object] = []
            async for x in fetch_history(fabric, PRODUCER, SUBJECT, 1, 10, max_bytes=250):
                seen.append(x.item if isinstance(x, HistoryItem) else x)
                if seen == [1]:
                    for n in range(11, 16):  # evicts 1..5 between two replies
                        history.add(SUBJECT, n, b"y" * 100)
    # one item per reply (max_bytes): item 1 came before the eviction, 2..5 after it
    assert seen == [1, Gap(SUBJECT, 2, 5), 6, 7, 8, 9, 10]


async def test_two_responders_for_one_producer_yield_each_item_once(fabric: Fabric) -> None:
    # e.g. an old and a new instance of the producer overlapping during a restart
    with HistoryBuffer() as history:
        for n in range(1, 51):
            history.add(SUBJECT, n, b"x" * 100)
        async with (
            HistoryServer(fabric, PRODUCER, history) as one,
            HistoryServer(fabric, PRODUCER, history) as two,
        ):
            assert await replayed(fabric, 1, 50, max_bytes=1000) == list(range(1, 51))
        assert one.stats["requests"] == two.stats["requests"] > 1


async def test_stopping_early_releases_the_reply_subscription(fabric: Fabric) -> None:
    with HistoryBuffer() as history:
        for n in range(1, 11):
            history.add(SUBJECT, n, b"x")
        async with HistoryServer(fabric, PRODUCER, history):
            subscriptions = len(fabric.nc._subs)
            async with contextlib.aclosing(
                fetch_history(fabric, PRODUCER, SUBJECT, 1, 10, max_bytes=1)
            ) as replay:
                async for x in replay:
                    assert isinstance(x, HistoryItem)
                    break
            assert len(fabric.nc._subs) == subscriptions
            assert await replayed(fabric, 1, 10) == list(range(1, 11))


async def test_request_stop_ends_run_and_the_producer_becomes_unavailable(
    fabric: Fabric,
) -> None:
    with HistoryBuffer() as history:
        history.add(SUBJECT, 1, b"one")
        server = HistoryServer(fabric, PRODUCER, history)
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            assert (await collect_history(fabric, PRODUCER, SUBJECT, 1, 1)).complete
            server.request_stop()
            server.request_stop()
        with pytest.raises(ReplayUnavailable):
            await collect_history(fabric, PRODUCER, SUBJECT, 1, 1, timeout=1)


async def test_fetch_history_rejects_an_empty_range(fabric: Fabric) -> None:
    with pytest.raises(ValueError, match="0 <= first <= last"):
        await collect_history(fabric, PRODUCER, SUBJECT, 5, 4)
