"""An Injector bound to a site (``link_site``) puts its link faults through that site's
LinkControl, on a real nats-server with a LinkProxy."""

from __future__ import annotations

import socket

import pytest

from diaspora.errors import InjectionError
from diaspora.events import LinkHealed, MemorySink
from diaspora.fabric import Fabric, LinkControl, LinkProxy
from diaspora.testing import FaultKind, Injector, wait_until

pytestmark = pytest.mark.anyio


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_an_injector_bound_to_a_site_puts_link_faults_through_its_link_control(
    fabric: Fabric, link_proxy: LinkProxy
) -> None:
    sink = MemorySink()
    async with LinkControl(fabric, "edge", link_proxy, events=sink) as control:
        async with Injector(fabric, link_site="edge") as injector:
            record = await injector.cut_link(duration=0.5)
            assert record.kind is FaultKind.CUT_LINK
            assert refused(link_proxy.port)
            assert not injector.link_open
            assert list(control.active()) == ["cut_link"]
            # the control lifts it (its timer), the injector marks it over (its own)
            await wait_until(lambda: injector.link_open and not control.active(), what="cut over")
            assert any(isinstance(e, LinkHealed) and e.by == "timer" for e in sink.events)
            assert not refused(link_proxy.port)

            await injector.latency(0.05, jitter=0.01)
            await injector.bandwidth(1_000_000, duration=30)
            await injector.reset_link()
            assert control.active() == {"latency": None, "bandwidth": pytest.approx(30, abs=5)}
            await injector.heal()
            assert control.active() == {}
            await injector.blackhole(30)
            assert list(control.active()) == ["blackhole"]
        # leaving the injector heals the link through the control
        assert control.active() == {}
    assert sorted(injector.counts()) == [
        "bandwidth",
        "blackhole",
        "cut_link",
        "latency",
        "reset_link",
    ]


async def test_an_injector_bound_to_an_unknown_site_says_which(fabric: Fabric) -> None:
    async with Injector(fabric, link_site="nosuch") as injector:
        with pytest.raises(InjectionError, match=r"cut_link.*site 'nosuch'.*nobody serves"):
            await injector.cut_link(duration=1)
        assert injector.records == []
