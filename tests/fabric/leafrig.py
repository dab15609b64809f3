"""A two-site test rig: a hub and an edge, each its own JetStream domain, joined by a leaf link.

The edge's leaf remote goes through a :class:`~diaspora.testing.LinkProxy`, so
a test can cut the link (``rig.proxy.cut()`` / ``heal()``); the hub listens
for leaf connections with ``no_advertise`` so the edge cannot bypass the
proxy. Configs as in the hierarchy notes, §2. Also used by
``bench/bridges_bench.py``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import nats
import nats.errors

from diaspora.fabric import EmbeddedServer, free_port
from diaspora.testing import LinkProxy

__all__ = ["LeafRig", "leaf_rig", "wait_domain"]


@dataclass(slots=True)
class LeafRig:
    hub: EmbeddedServer
    edge: EmbeddedServer
    proxy: LinkProxy
    hub_domain: str
    edge_domain: str
    #: A third tier above the hub (its leaf link direct, no proxy), when asked for.
    cloud: EmbeddedServer | None = None


async def _quiet(exc: Exception) -> None:
    """nats-py's default error callback prints each failed reconnect."""


async def wait_domain(url: str, domain: str, *, timeout: float = 30.0, up: bool = True) -> float:
    """Poll ``$JS.<domain>.API.INFO`` from ``url`` until it answers (or stops, ``up=False``).

    Returns the seconds it took.
    """
    started = time.monotonic()
    nc = await nats.connect(
        url, max_reconnect_attempts=-1, reconnect_time_wait=0.1, error_cb=_quiet
    )
    try:
        with anyio.fail_after(timeout):
            while True:
                try:
                    await nc.request(f"$JS.{domain}.API.INFO", b"", timeout=0.5)
                    answered = True
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    answered = False
                if answered == up:
                    return time.monotonic() - started
                await anyio.sleep(0.05)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


@contextlib.asynccontextmanager
async def leaf_rig(
    hub_domain: str = "hpc", edge_domain: str = "edge", *, cloud_domain: str | None = None
) -> AsyncIterator[LeafRig]:
    """Start the hub, the proxy and the edge; yield once the domains answer each other.

    With ``cloud_domain``, a cloud server is started first and the hub is its leaf.
    """
    async with contextlib.AsyncExitStack() as stack:
        cloud = None
        uplink = ""
        if cloud_domain is not None:
            cloud_leaf = free_port()
            cloud = EmbeddedServer(
                name="cloud",
                jetstream_domain=cloud_domain,
                extra_config=(
                    f'leafnodes {{ listen: "127.0.0.1:{cloud_leaf}", no_advertise: true }}'
                ),
            )
            await stack.enter_async_context(cloud)
            remote = f'{{ url: "nats-leaf://127.0.0.1:{cloud_leaf}" }}'
            uplink = f', reconnect: "1s", remotes: [ {remote} ]'
        leaf_port = free_port()
        hub = EmbeddedServer(
            name="hub",
            jetstream_domain=hub_domain,
            extra_config=(
                f'leafnodes {{ listen: "127.0.0.1:{leaf_port}", no_advertise: true{uplink} }}'
            ),
        )
        await stack.enter_async_context(hub)
        proxy = await stack.enter_async_context(LinkProxy(leaf_port))
        edge = EmbeddedServer(
            name="edge",
            jetstream_domain=edge_domain,
            extra_config=(
                f'leafnodes {{ reconnect: "1s", remotes: [ '
                f'{{ url: "nats-leaf://127.0.0.1:{proxy.port}" }} ] }}'
            ),
        )
        await stack.enter_async_context(edge)
        await wait_domain(hub.url, edge_domain)
        await wait_domain(edge.url, hub_domain)
        if cloud is not None and cloud_domain is not None:
            await wait_domain(cloud.url, edge_domain)
            await wait_domain(edge.url, cloud_domain)
        yield LeafRig(hub, edge, proxy, hub_domain, edge_domain, cloud)


async def publish_numbers(
    url: str, subject: str, start: int, stop: int, *, rate: float | None = None
) -> None:
    """Publish ``{"x": i}`` for ``i`` in ``[start, stop)`` with ``Nats-Msg-Id`` ``<subject>:i``.

    Acked by the stream at ``url``'s site; paced at ``rate`` msg/s when given.
    """
    from diaspora import codec

    nc = await nats.connect(url, error_cb=_quiet)
    try:
        js = nc.jetstream(publish_async_max_pending=2000)
        started = time.monotonic()
        for i in range(start, stop):
            await js.publish_async(
                subject,
                codec.encode({"x": i}),
                headers={"Nats-Msg-Id": f"{subject}:{i}", "X-Instrument": "det1"},
            )
            if rate is not None and (i - start) % 20 == 19:
                ahead = started + (i - start + 1) / rate - time.monotonic()
                if ahead > 0:
                    await anyio.sleep(ahead)
        await js.publish_async_completed()
    finally:
        await nc.close()
