"""The domain seam: streams, consumers and reads addressed to a JetStream domain."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import anyio
import pytest

from diaspora.actor._mailbox import Mailbox
from diaspora.errors import ConfigError, FabricUnavailable, StreamNotFound
from diaspora.fabric import Delivery, EmbeddedServer, Fabric
from diaspora.fabric._reader import read_stored

pytestmark = pytest.mark.anyio


@pytest.fixture
async def edge() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(jetstream_domain="edge") as server:
        yield server


def test_a_domain_that_cannot_be_a_subject_token_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape("jetstream_domain='edge.1'")):
        EmbeddedServer(jetstream_domain="edge.1")


async def test_the_server_config_names_the_domain(edge: EmbeddedServer) -> None:
    assert "domain: edge" in edge.config_path.read_text()


async def test_a_stream_is_created_and_read_through_its_domain(edge: EmbeddedServer) -> None:
    async with Fabric(edge.url) as fabric:
        await fabric.ensure_stream("site.patterns", domain="edge", duplicate_window=30)
        await fabric.require_stream("site.patterns", domain="edge", min_duplicate_window=60)
        for i in range(3):
            ack = await fabric.publish("site.patterns", {"i": i})
            assert ack.domain == "edge"
        assert await fabric.stream_bounds("site.patterns", domain="edge") == (1, 3)
        assert await fabric.duplicate_window("site.patterns", domain="edge") == pytest.approx(60)
        stored = [m.seq async for m in read_stored(fabric, "site.patterns", domain="edge")]
        assert stored == [1, 2, 3]
        # the local domain is the same JetStream here: both names reach the stream
        assert await fabric.stream_bounds("site.patterns") == (1, 3)


async def test_a_domain_nobody_serves_has_no_streams(edge: EmbeddedServer) -> None:
    async with Fabric(edge.url) as fabric:
        await fabric.ensure_stream("site.patterns", domain="edge")
        with pytest.raises(FabricUnavailable, match="no JetStream answers in domain 'hpc'"):
            await fabric.stream_bounds("site.patterns", domain="hpc")
        with pytest.raises(FabricUnavailable, match="'hpc'"):
            await fabric.duplicate_window("site.patterns", domain="hpc")
        with pytest.raises(
            StreamNotFound, match=re.escape("in domain 'edge' for subject 'site.other'")
        ):
            await fabric.stream_bounds("site.other", domain="edge")


async def test_a_pull_consumer_reads_through_its_domain(edge: EmbeddedServer) -> None:
    async with Fabric(edge.url) as fabric:
        await fabric.ensure_stream("site.events", domain="edge")
        for i in range(5):
            await fabric.publish("site.events", {"i": i})
        got: list[Delivery] = []
        done = anyio.Event()

        def deliver(delivery: Delivery) -> None:
            got.append(delivery)
            if len(got) == 4:
                done.set()

        consumer = fabric.pull_consumer(
            "site.events",
            "dsp-edge-reader",
            start_seq=2,
            deliver=deliver,
            credit=lambda: (10, 1 << 20) if not got else None,
            domain="edge",
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            with anyio.fail_after(10):
                await done.wait()
            assert await consumer.ack(got[-1])
            tg.cancel_scope.cancel()
        assert [d.seq for d in got] == [2, 3, 4, 5]
        assert all(d.subject == "site.events" and d.gap_from is None for d in got)
        assert got[0].pending == 3


async def test_a_mailbox_works_on_a_server_with_a_domain(edge: EmbeddedServer) -> None:
    async with Fabric(edge.url) as fabric:
        await fabric.ensure_stream("site.inputs")
        await fabric.publish("site.inputs", {"n": 1})
        mailbox = Mailbox(fabric, "site-reader", {"site.inputs": 1})
        async with anyio.create_task_group() as tg:
            await tg.start(mailbox.run)
            got = await mailbox.take(10, timeout=10)
            mailbox.handled(got[0])
            await mailbox.ack(force=True)
            tg.cancel_scope.cancel()
        assert [d.seq for d in got] == [1]
