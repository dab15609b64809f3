"""LinkControl: fault orders on diaspora.control.link.<site>.fault degrade a real link.

Every test runs a real nats-server, a LinkProxy in front of it, a client
connected through the proxy, and the control on a direct connection (so a cut
never cuts the control off its own orders).
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from diaspora.errors import ConfigError, LinkControlNotFound, LinkFaultError, NoResponders
from diaspora.events import LinkFaulted, LinkHealed, MemorySink
from diaspora.fabric import (
    EmbeddedServer,
    Fabric,
    Inbound,
    LinkControl,
    LinkFault,
    LinkFaultKind,
    LinkProxy,
    link_control_subject,
    link_fault,
)
from diaspora.fabric._server import free_port
from diaspora.testing import wait_until

pytestmark = pytest.mark.anyio


def refused(port: int) -> bool:
    """Whether a new TCP connection to the proxy is refused now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def healed(sink: MemorySink, fault: str, by: str) -> bool:
    return any(isinstance(e, LinkHealed) and e.fault == fault and e.by == by for e in sink.events)


@asynccontextmanager
async def control(
    fabric: Fabric, proxy: LinkProxy, site: str = "edge"
) -> AsyncIterator[tuple[LinkControl, MemorySink]]:
    sink = MemorySink()
    async with LinkControl(fabric, site, proxy, events=sink) as running:
        yield running, sink


async def order(fabric: Fabric, site: str, payload: bytes) -> dict[str, object]:
    """Send a raw order on the control subject, as any NATS client would; the JSON reply."""
    reply = await fabric.request(link_control_subject(site), payload, timeout=5)
    answer = json.loads(reply.data)
    assert isinstance(answer, dict)
    return answer


async def test_a_cut_order_drops_the_client_refuses_it_for_the_duration_then_heals_itself(
    nats_server: EmbeddedServer, fabric: Fabric, link_proxy: LinkProxy
) -> None:
    async with (
        control(fabric, link_proxy) as (running, sink),
        Fabric(link_proxy.url, name="through-link") as client,
    ):
        assert client.is_connected
        reply = await order(fabric, "edge", b'{"fault": "cut", "seconds": 1.5}')
        assert (reply["ok"], reply["fault"], reply["site"]) == (True, "cut_link", "edge")
        assert (reply["duration"], reply["active"]) == (
            1.5,
            {"cut_link": pytest.approx(1.5, abs=1)},
        )
        # in force once answered: new connections refused, the open one dropped
        assert refused(link_proxy.port)
        await wait_until(lambda: not client.is_connected, what="client dropped by the cut")
        assert any(isinstance(e, LinkFaulted) and e.duration == 1.5 for e in sink.events)
        # nobody heals it: its own timer does, and the client comes back by itself
        await wait_until(lambda: healed(sink, "cut_link", "timer"), timeout=15, what="cut lifted")
        assert running.active() == {}
        # nats-py is connected again just before it calls the reconnect callback that counts
        await wait_until(
            lambda: client.is_connected and client.reconnects >= 1,
            timeout=15,
            what="client reconnected",
        )
        assert not refused(link_proxy.port)


async def echo(msg: Inbound) -> None:
    await msg.respond(msg.data)


async def test_a_latency_order_holds_traffic_through_the_link_behind_direct_traffic(
    fabric: Fabric, link_proxy: LinkProxy
) -> None:
    done: list[str] = []
    took: dict[str, float] = {}

    async def ask(via: Fabric, name: str) -> None:
        started = anyio.current_time()
        assert (await via.request("echo", name.encode(), timeout=10)).data == name.encode()
        took[name] = anyio.current_time() - started
        done.append(name)

    async with (
        control(fabric, link_proxy) as (running, sink),
        Fabric(link_proxy.url, name="through-link") as client,
        fabric.subscription("echo", echo, flush=True),
    ):
        reply = await link_fault(fabric, "edge", "latency", seconds=0.5, jitter=0.01, duration=60)
        assert (reply["fault"], reply["seconds"], reply["jitter"]) == ("latency", 0.5, 0.01)
        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, client, "via-link")
            tg.start_soon(ask, fabric, "direct")
        assert done == ["direct", "via-link"]
        # the proxy holds every byte at least 0.5 s each way (a bound by construction)
        assert took["via-link"] >= 2 * 0.5
        # a heal order lifts it before its duration; traffic flows again
        healed_reply = await link_fault(fabric, "edge", "heal")
        assert (healed_reply["lifted"], healed_reply["active"]) == (["latency"], {})
        assert healed(sink, "latency", "order")
        await ask(client, "after-heal")
        assert running.active() == {}


BAD_ORDERS = [
    (b'{"fault": "latency", "seconds": "fast"}', "field 'seconds'"),
    (b'{"fault": "latency"}', "field 'seconds' is missing"),
    (b'{"fault": "teleport"}', "field 'fault': 'teleport' is not one of"),
    (b'{"seconds": 3}', "field 'fault' is missing"),
    (b'{"fault": "cut", "sconds": 3}', "unknown field 'sconds'"),
    (b'{"fault": "bandwidth", "rate": 0}', "field 'rate' of bandwidth must be > 0"),
    (b'{"fault": "cut", "seconds": 3, "duration": 4}', "'seconds' and 'duration'"),
    (b'{"fault": "reset", "duration": 4}', "unknown field 'duration'"),
    (b"cut it", "not JSON"),
    (b"[1, 2]", "must be a JSON object"),
]


async def test_a_bad_order_is_refused_with_an_error_naming_the_field(
    fabric: Fabric, link_proxy: LinkProxy
) -> None:
    async with control(fabric, link_proxy) as (running, sink):
        for payload, names in BAD_ORDERS:
            reply = await order(fabric, "edge", payload)
            assert reply["ok"] is False, payload
            assert names in str(reply["error"]), (payload, reply)
            assert reply["site"] == "edge"
        assert running.active() == {}
        assert sink.events == []
        assert not refused(link_proxy.port)
        # the control still obeys a good order after all of those
        assert (await order(fabric, "edge", b'{"fault": "reset"}'))["ok"] is True


async def test_link_fault_checks_the_order_before_sending_it(fabric: Fabric) -> None:
    with pytest.raises(ConfigError, match="field 'seconds' of latency must be >= 0"):
        await link_fault(fabric, "edge", "latency", seconds=-1)
    with pytest.raises(ConfigError, match="field 'rate' does not apply to cut_link"):
        await link_fault(fabric, "edge", "cut", rate=10)


async def test_an_order_for_an_unknown_site_is_a_clear_error_naming_the_site(
    fabric: Fabric, link_proxy: LinkProxy
) -> None:
    async with control(fabric, link_proxy, "edge"):
        with pytest.raises(LinkControlNotFound, match="site 'hpc'") as caught:
            await link_fault(fabric, "hpc", "cut", seconds=1)
    assert isinstance(caught.value, NoResponders)
    assert caught.value.site == "hpc"
    assert "diaspora.control.link.hpc.fault" in str(caught.value)
    assert not refused(link_proxy.port)


async def test_a_refusal_raises_link_fault_error_with_the_reply(fabric: Fabric) -> None:
    async def refuse(msg: Inbound) -> None:
        await msg.respond(b'{"ok": false, "error": "field \'rate\' is too fast"}')

    async with fabric.subscription(link_control_subject("edge"), refuse, flush=True):
        with pytest.raises(LinkFaultError, match=r"site 'edge'.*field 'rate' is too fast") as e:
            await link_fault(fabric, "edge", "bandwidth", rate=1e9)
    assert e.value.site == "edge"
    assert e.value.reply == {"ok": False, "error": "field 'rate' is too fast"}


async def test_a_newer_order_replaces_its_aspect_and_other_aspects_stack(
    fabric: Fabric, link_proxy: LinkProxy
) -> None:
    async with control(fabric, link_proxy) as (running, sink):
        await link_fault(fabric, "edge", "latency", seconds=0.5, duration=0.2)
        await link_fault(fabric, "edge", "bandwidth", rate=1_000_000)
        reply = await link_fault(fabric, "edge", "latency", seconds=0.05)  # replaces, no end
        assert reply["active"] == {"latency": None, "bandwidth": None}
        await link_fault(fabric, "edge", "cut", seconds=0.5)
        assert refused(link_proxy.port)
        # by the time the cut lifts, the replaced latency's 0.2 s timer would have fired
        await wait_until(lambda: healed(sink, "cut_link", "timer"), what="cut lifted")
        assert not refused(link_proxy.port)
        assert running.active() == {"latency": None, "bandwidth": None}
        assert not any(isinstance(e, LinkHealed) and e.fault == "latency" for e in sink.events)
        assert link_proxy._latency == 0.05  # the newer latency is still on the proxy
        assert all(b.rate == 1_000_000 for b in link_proxy._buckets.values())


async def test_a_published_heal_lifts_everything_and_stopping_the_control_heals_the_link(
    fabric: Fabric, link_proxy: LinkProxy
) -> None:
    async with control(fabric, link_proxy) as (running, sink):
        await link_fault(fabric, "edge", "cut")
        await link_fault(fabric, "edge", "hold", seconds=30)
        await link_fault(fabric, "edge", "latency", seconds=0.2, duration=30)
        assert set(running.active()) == {"cut_link", "blackhole", "latency"}
        # published, not requested: obeyed all the same (nobody to answer)
        await fabric.publish_core(link_control_subject("edge"), b'{"fault": "clear"}')
        await wait_until(lambda: running.active() == {}, what="heal obeyed")
        assert not refused(link_proxy.port)
        for fault in ("cut_link", "blackhole", "latency"):
            assert healed(sink, fault, "order")
        await link_fault(fabric, "edge", "cut")
        assert refused(link_proxy.port)
    assert healed(sink, "cut_link", "stop")
    await wait_until(lambda: not refused(link_proxy.port), what="listening after stop")


async def test_a_blackhole_order_holds_bytes_until_its_timer_lifts_it(
    fabric: Fabric, link_proxy: LinkProxy
) -> None:
    async with (
        control(fabric, link_proxy) as (_, sink),
        Fabric(link_proxy.url, name="through-link") as client,
        fabric.subscription("echo", echo, flush=True),
    ):
        await link_fault(fabric, "edge", "blackhole", duration=0.5)
        await client.request("echo", b"held", timeout=10)
        # the answer could only come back once the timer had lifted the blackhole
        assert healed(sink, "blackhole", "timer")
        assert client.reconnects == 0  # held, never dropped


async def test_the_control_runs_once_at_a_time(fabric: Fabric, link_proxy: LinkProxy) -> None:
    running = LinkControl(fabric, "edge", link_proxy)
    async with running:
        with pytest.raises(RuntimeError, match="already running"):
            await running.__aenter__()
    with pytest.raises(RuntimeError, match="not running"):
        await running.apply(LinkFault(LinkFaultKind.HEAL))


async def test_a_cut_order_cuts_a_sites_leaf_uplink_and_it_heals_itself() -> None:
    """The use it is made for: the proxy on the edge's leaf link to the hub."""
    async with (
        EmbeddedServer(jetstream_domain="hpc", leaf_port=free_port()) as hub,
        LinkProxy(hub.leaf_port or 0) as uplink,
        EmbeddedServer(
            jetstream_domain="edge", leaf_remotes=[f"nats-leaf://127.0.0.1:{uplink.port}"]
        ) as edge,
        Fabric(hub.url, name="hub") as at_hub,
        Fabric(edge.url, name="edge") as at_edge,
        control(at_edge, uplink) as (_, sink),
        at_hub.subscription("hub.echo", echo, flush=True),
    ):

        async def hub_answers() -> bool:
            try:
                await at_edge.request("hub.echo", b"?", timeout=1)
            except (NoResponders, TimeoutError):
                return False
            return True

        async def hub_cut_off() -> bool:
            return not await hub_answers()

        await wait_until(hub_answers, timeout=30, what="the leaf link up")
        await link_fault(at_edge, "edge", "cut", seconds=3.0)
        await wait_until(hub_cut_off, what="the hub unreachable from the edge")
        assert not healed(sink, "cut_link", "timer")  # cut off by the cut, while it lasts
        await wait_until(lambda: healed(sink, "cut_link", "timer"), what="cut lifted")
        await wait_until(hub_answers, timeout=30, what="the leaf link back by itself")
