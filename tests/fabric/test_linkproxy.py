"""LinkProxy: forwarding and link faults between nats-py and a real nats-server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import StreamConfig

import diaspora.testing
from diaspora.fabric import EmbeddedServer, LinkProxy, free_port
from diaspora.testing import wait_until

pytestmark = pytest.mark.anyio


class Link:
    """A nats-py client's view of its connection: disconnect/reconnect events and errors."""

    def __init__(self) -> None:
        self.disconnected = anyio.Event()
        self.reconnected = anyio.Event()
        self.disconnects = 0
        self.reconnects = 0
        self.errors: list[Exception] = []

    async def on_disconnected(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    async def on_reconnected(self) -> None:
        self.reconnects += 1
        self.reconnected.set()

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(exc)


@asynccontextmanager
async def client(url: str, link: Link | None = None, **options: Any) -> AsyncIterator[Client]:
    link = link or Link()
    nc = await nats.connect(
        url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.05,
        disconnected_cb=link.on_disconnected,
        reconnected_cb=link.on_reconnected,
        error_cb=link.on_error,
        **options,
    )
    try:
        yield nc
    finally:
        await nc.close()


async def settle(nc: Client) -> None:
    """Return once everything ``nc`` sent so far has reached the server.

    nats-py writes a flush's PING straight to the socket, ahead of commands still queued for
    its flusher task, so one flush can return early; the second PING follows them.
    """
    await nc.flush(timeout=10)
    await nc.flush(timeout=10)


@asynccontextmanager
async def echo_responder(server: EmbeddedServer, subject: str = "echo") -> AsyncIterator[None]:
    """Answers requests on ``subject`` over a direct connection (no proxy in its path)."""
    async with client(server.url) as nc:

        async def respond(msg: Msg) -> None:
            await msg.respond(msg.data)

        await nc.subscribe(subject, cb=respond)
        await settle(nc)
        yield


async def round_trips(nc: Client, n: int) -> list[float]:
    times = []
    for i in range(n):
        started = time.monotonic()
        reply = await nc.request("echo", str(i).encode(), timeout=10)
        times.append(time.monotonic() - started)
        assert reply.data == str(i).encode()
    return times


async def refused(port: int) -> bool:
    try:
        stream = await anyio.connect_tcp("127.0.0.1", port)
    except OSError:
        return True
    await stream.aclose()
    return False


async def test_forwards_pub_sub_and_jetstream_acks(link_proxy: LinkProxy) -> None:
    assert link_proxy.url == f"nats://127.0.0.1:{link_proxy.port}"
    async with client(link_proxy.url) as nc:
        sub = await nc.subscribe("greet")
        await nc.publish("greet", b"hello")
        msg = await sub.next_msg(timeout=5)
        assert msg.data == b"hello"

        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="PROXIED", subjects=["proxied"]))
        acks = [await js.publish("proxied", str(i).encode()) for i in range(20)]
        assert [a.seq for a in acks] == list(range(1, 21))

    stats = link_proxy.stats()
    assert stats["connections_accepted"] == 1
    assert stats["connections_reset"] == 0
    assert stats["bytes_to_server"] > 20 * len("PUB proxied")
    assert stats["bytes_to_client"] > 0
    await wait_until(lambda: link_proxy.stats()["connections_open"] == 0, what="conn closed")


async def test_latency_adds_delay_each_way_and_keeps_order_under_jitter(
    nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> None:
    latency = 0.1
    async with echo_responder(nats_server), client(link_proxy.url) as nc:
        clean = await round_trips(nc, 5)
        link_proxy.set_latency(latency)
        delayed = await round_trips(nc, 5)
        # the proxy never delivers early: a round trip crosses the delay twice
        assert min(delayed) >= 2 * latency
        assert min(delayed) - min(clean) >= 1.5 * latency

        # jitter larger than the spacing between messages must not reorder or garble bytes
        link_proxy.set_latency(0.01, jitter=0.05)
        sub = await nc.subscribe("ordered")
        await settle(nc)
        for i in range(300):
            await nc.publish("ordered", str(i).encode())
            if i % 30 == 0:
                await anyio.sleep(0.005)  # spread the publishes over several chunks
        got = [int((await sub.next_msg(timeout=5)).data) for _ in range(300)]
        assert got == list(range(300))


async def test_latency_is_a_delay_line_not_a_stall(
    nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> None:
    latency, n = 0.2, 10
    async with echo_responder(nats_server), client(link_proxy.url) as nc:
        link_proxy.set_latency(latency)
        replies: list[bytes] = []

        async def request(i: int) -> None:
            replies.append((await nc.request("echo", str(i).encode(), timeout=10)).data)

        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(request, i)
                await anyio.sleep(0.02)  # separate chunks on the wire
        elapsed = time.monotonic() - started
        assert sorted(replies) == sorted(str(i).encode() for i in range(n))
        # in flight together: about one round trip plus the spacing (~0.6 s); a proxy that
        # slept per chunk would need n * latency = 2 s for the requests alone
        assert elapsed < n * latency * 0.8


async def test_bandwidth_cap_slows_large_transfers_both_ways(
    nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> None:
    payload = b"x" * (256 * 1024)
    count = 4  # 1 MiB each way
    rate = 2 * 1024 * 1024  # expect about 0.5 s per direction

    async with client(nats_server.url) as direct, client(link_proxy.url) as proxied:
        ups = await direct.subscribe("up")
        downs = await proxied.subscribe("down")
        await settle(direct)
        await settle(proxied)

        async def transfer(sender: Client, subject: str, sub: Subscription) -> float:
            """Seconds from the first publish until the receiver has every payload."""
            started = time.monotonic()
            for _ in range(count):
                await sender.publish(subject, payload)
            for _ in range(count):
                assert (await sub.next_msg(timeout=30)).data == payload
            return time.monotonic() - started

        clean_up = await transfer(proxied, "up", ups)
        clean_down = await transfer(direct, "down", downs)
        link_proxy.set_bandwidth(rate)
        capped_up = await transfer(proxied, "up", ups)
        capped_down = await transfer(direct, "down", downs)

    floor = 0.8 * count * len(payload) / rate  # the bucket's burst is only 50 ms of rate
    assert capped_up >= floor
    assert capped_down >= floor
    assert capped_up > 3 * clean_up
    assert capped_down > 3 * clean_down
    stats = link_proxy.stats()
    assert stats["bytes_to_server"] >= 2 * count * len(payload)
    assert stats["bytes_to_client"] >= 2 * count * len(payload)


async def test_reset_sends_rst_and_the_client_reconnects(
    nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> None:
    link = Link()
    async with echo_responder(nats_server), client(link_proxy.url, link) as nc:
        raw = await anyio.connect_tcp("127.0.0.1", link_proxy.port)
        assert (await raw.receive()).startswith(b"INFO ")
        await wait_until(lambda: link_proxy.stats()["connections_open"] == 2, what="both open")

        assert link_proxy.reset() == 2

        with pytest.raises(anyio.BrokenResourceError) as caught:  # EndOfStream if a FIN came
            await raw.receive()
        assert isinstance(caught.value.__cause__, ConnectionResetError)
        await raw.aclose()
        with anyio.fail_after(10):
            await link.disconnected.wait()
            await link.reconnected.wait()
        assert not any(isinstance(e, nats.errors.UnexpectedEOF) for e in link.errors)
        assert (await nc.request("echo", b"after", timeout=5)).data == b"after"

    stats = link_proxy.stats()
    assert stats["connections_reset"] == 2
    assert stats["connections_accepted"] == 3


async def test_blackhole_holds_bytes_and_heal_delivers_them_without_reconnect(
    nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> None:
    link = Link()
    async with (
        echo_responder(nats_server),
        client(nats_server.url) as direct,
        client(link_proxy.url, link) as nc,
    ):
        seen = await direct.subscribe("held")
        await settle(direct)
        assert (await nc.request("echo", b"before", timeout=5)).data == b"before"

        link_proxy.blackhole()
        held_from = link_proxy.stats()
        await nc.publish("held", b"kept")
        with pytest.raises(nats.errors.TimeoutError):
            await nc.request("echo", b"lost?", timeout=0.5)
        assert seen.pending_msgs == 0  # held, not delivered
        assert link_proxy.stats() == held_from

        link_proxy.heal()
        assert (await seen.next_msg(timeout=5)).data == b"kept"  # held, not dropped
        assert (await nc.request("echo", b"after", timeout=5)).data == b"after"
        assert link.disconnects == 0
        assert link.reconnects == 0

    assert link_proxy.stats()["connections_accepted"] == 1
    assert link_proxy.stats()["bytes_to_server"] > held_from["bytes_to_server"]


async def test_timed_blackhole_ends_by_itself(
    nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> None:
    hold = 0.5
    async with echo_responder(nats_server), client(link_proxy.url) as nc:
        await nc.flush()
        started = time.monotonic()
        link_proxy.blackhole(hold)
        reply = await nc.request("echo", b"late", timeout=10)
        assert reply.data == b"late"
        assert time.monotonic() - started >= hold


async def test_new_connections_during_blackhole_are_accepted_but_see_nothing(
    link_proxy: LinkProxy,
) -> None:
    connected: list[Client] = []

    async def connect() -> None:
        connected.append(await nats.connect(link_proxy.url, connect_timeout=10))

    async with anyio.create_task_group() as tg:
        with link_proxy.blackholed():
            tg.start_soon(connect)
            await wait_until(lambda: link_proxy.stats()["connections_accepted"] == 1)
            await anyio.sleep(0.3)  # let time pass: the server's INFO is held
            assert connected == []
        # leaving the block ends the blackhole: INFO arrives, the handshake completes
    [nc] = connected
    await nc.flush(timeout=5)
    await nc.close()


async def test_cut_refuses_connections_until_heal_then_the_client_reconnects(
    nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> None:
    link = Link()
    async with echo_responder(nats_server), client(link_proxy.url, link) as nc:
        link_proxy.cut()
        with anyio.fail_after(10):
            await link.disconnected.wait()
        await wait_until(lambda: refused(link_proxy.port), what="connections refused")
        await anyio.sleep(0.5)  # let time pass: ~10 reconnect attempts, all refused
        assert not link.reconnected.is_set()
        assert not nc.is_connected
        assert link_proxy.stats()["connections_accepted"] == 1

        link_proxy.heal()
        with anyio.fail_after(10):
            await link.reconnected.wait()
        assert (await nc.request("echo", b"back", timeout=5)).data == b"back"

    stats = link_proxy.stats()
    assert stats["connections_reset"] == 1
    assert stats["connections_accepted"] == 2


async def test_a_healed_or_reopened_link_accepts_connections_at_once(
    link_proxy: LinkProxy,
) -> None:
    for end_cut in (link_proxy.heal, link_proxy.reopen):
        link_proxy.cut()
        await wait_until(lambda: refused(link_proxy.port), what="connections refused")
        end_cut()  # no await before the connection: healed means listening
        with socket.create_connection(("127.0.0.1", link_proxy.port), timeout=5):
            pass


async def test_reopen_and_end_blackhole_lift_one_fault_and_keep_the_others(
    nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> None:
    async with echo_responder(nats_server), client(link_proxy.url) as nc:
        link_proxy.set_latency(0.3)
        link_proxy.cut()
        await wait_until(lambda: not nc.is_connected, what="client dropped by the cut")
        link_proxy.reopen()
        await wait_until(lambda: nc.is_connected, what="client back after reopen")
        started = time.monotonic()
        await nc.request("echo", b"slow", timeout=10)
        assert time.monotonic() - started >= 0.6  # the latency outlived the cut
        link_proxy.set_latency(0.0)
        link_proxy.blackhole()
        reply = asyncio.ensure_future(nc.request("echo", b"held", timeout=10))
        await anyio.sleep(0.2)
        assert not reply.done()
        link_proxy.end_blackhole()
        assert (await reply).data == b"held"


def test_diaspora_testing_still_exports_the_link_proxy() -> None:
    assert diaspora.testing.LinkProxy is LinkProxy


async def test_exit_closes_listener_and_connections_and_leaves_no_tasks(
    nats_server: EmbeddedServer,
) -> None:
    port = free_port()
    tasks_before = asyncio.all_tasks()
    async with LinkProxy(nats_server.port, listen_port=port) as proxy:
        assert proxy.url == f"nats://127.0.0.1:{port}"
        raw = await anyio.connect_tcp("127.0.0.1", port)
        assert (await raw.receive()).startswith(b"INFO ")
        assert asyncio.all_tasks() > tasks_before
    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
        await raw.receive()
    await raw.aclose()
    assert await refused(port)
    assert asyncio.all_tasks() == tasks_before


async def test_upstream_down_resets_the_client() -> None:
    async with LinkProxy(free_port()) as proxy:  # nothing listens there
        stream = await anyio.connect_tcp("127.0.0.1", proxy.port)
        with pytest.raises(anyio.BrokenResourceError):
            await stream.receive()
        await stream.aclose()
        assert proxy.stats()["connections_accepted"] == 1


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (lambda p: p.set_latency(-1), r"set_latency: seconds=-1 must be"),
        (lambda p: p.set_latency(0.1, jitter=float("nan")), r"set_latency: jitter=nan must"),
        (lambda p: p.set_bandwidth(0), r"set_bandwidth: bytes_per_second=0 must be"),
        (lambda p: p.blackhole(-2), r"blackhole: seconds=-2 must be"),
    ],
)
def test_bad_fault_settings_are_named(fault: Callable[[LinkProxy], None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fault(LinkProxy(4222))


async def test_resets_during_a_storm_of_new_connections_never_take_the_proxy_down(
    nats_server: EmbeddedServer,
) -> None:
    """Aborting a connection whose client transport is still being made used to close its
    fd under asyncio, and the next socket's fd clash crashed the proxy's task group."""
    async with LinkProxy(nats_server.port) as proxy:

        async def churn() -> None:
            for _ in range(100):
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", proxy.port)
                except OSError:
                    continue
                await stream.aclose()

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(churn)
            for _ in range(200):
                proxy.reset()
                await anyio.lowlevel.checkpoint()
        assert proxy.stats()["connections_accepted"] > 0
        nc = await nats.connect(proxy.url, allow_reconnect=False)  # still serving
        await nc.flush()
        await nc.close()
