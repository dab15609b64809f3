"""pytest plugin: real nats-server fixtures for async tests (anyio, asyncio backend).

Enable it in ``conftest.py`` with ``pytest_plugins = ["diaspora.testing.plugin"]``.

Fixtures:

- ``nats_server`` — a fresh :class:`~diaspora.fabric.EmbeddedServer` per test
  (free loopback port, temporary store), closed afterwards.
- ``nats_cluster`` — a 3-server :class:`~diaspora.fabric.EmbeddedCluster`.
- ``fabric`` — a :class:`~diaspora.fabric.Fabric` connected to ``nats_server``.
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
