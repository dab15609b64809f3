"""pytest plugin: real nats-server fixtures for async tests (anyio, asyncio backend).

Enable it in ``conftest.py`` with ``pytest_plugins = ["diaspora.testing.plugin"]``.

Fixtures:

- ``nats_server`` — a fresh :class:`~diaspora.fabric.EmbeddedServer` per test
  (free loopback port, temporary store), closed afterwards.
- ``nats_cluster`` — a 3-server :class:`~diaspora.fabric.EmbeddedCluster`.
- ``fabric`` — a :class:`~diaspora.fabric.Fabric` connected to ``nats_server``.
- ``link_proxy`` — a :class:`~diaspora.testing.LinkProxy` in front of ``nats_server``:
  connect to ``link_proxy.url`` to put link faults between client and server.
- ``anyio_backend`` — ``"asyncio"`` (nats-py runs on asyncio only).

Example test::

    import pytest

    @pytest.mark.anyio
    async def test_roundtrip(fabric):
        await fabric.ensure_stream("numbers")
        ack = await fabric.publish("numbers", {"x": 1})
        assert ack.seq == 1
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from diaspora.fabric import EmbeddedCluster, EmbeddedServer, Fabric
from diaspora.testing.proxy import LinkProxy


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def nats_server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer() as server:
        yield server


@pytest.fixture
async def nats_cluster() -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(3) as cluster:
        yield cluster


@pytest.fixture
async def fabric(nats_server: EmbeddedServer) -> AsyncIterator[Fabric]:
    async with Fabric(nats_server.url, name="test") as connected:
        yield connected


@pytest.fixture
async def link_proxy(nats_server: EmbeddedServer) -> AsyncIterator[LinkProxy]:
    async with LinkProxy(nats_server.port) as proxy:
        yield proxy
