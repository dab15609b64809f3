"""The fabric's pull consumer: protocol details the mailbox no longer sees (real nats-server)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import anyio
import nats
import pytest
from nats.aio.client import Client as NATS

from diaspora.clock import ManualClock
from diaspora.errors import ConfigError
from diaspora.fabric import ConsumerSettings, Delivery, EmbeddedServer, Fabric, PullConsumer
from diaspora.fabric._jsapi import parse_ack_subject
from diaspora.testing._waiting import wait_until

pytestmark = pytest.mark.anyio


def test_ack_subjects_parse_in_both_forms() -> None:
    old = "$JS.ACK.xs.dsp-a.1.42.40.1700000000000000000.7"
    new = "$JS.ACK.edge.ACCHASH.xs.dsp-a.1.42.40.1700000000500000000.7.tok"
    assert parse_ack_subject(old) == (42, 1700000000.0, 7)
    assert parse_ack_subject(new) == (42, 1700000000.5, 7)
    with pytest.raises(ValueError, match="not a JetStream ack subject"):
        parse_ack_subject("_INBOX.abc.def.1.2.3.4.5.6")


def test_settings_are_validated_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="heartbeat=0"):
        ConsumerSettings(heartbeat=0)
    with pytest.raises(ConfigError, match=re.escape("expires=1.0 must exceed heartbeat=2.0")):
        ConsumerSettings(expires=1.0)


class _Reader:
    """Collects deliveries; asks for ``batch`` more whenever nothing is outstanding."""

    def __init__(self, batch: int = 100) -> None:
        self.got: list[Delivery] = []
        self.batch = batch
        self.consumer: PullConsumer | None = None

    def deliver(self, delivery: Delivery) -> None:
        self.got.append(delivery)

    def credit(self) -> tuple[int, int] | None:
        assert self.consumer is not None
        return None if self.consumer.outstanding else (self.batch, 1 << 20)

    def seqs(self) -> list[int]:
        return [d.seq for d in self.got]


@pytest.fixture
async def plain(nats_server: EmbeddedServer) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


def _consumer(fabric: Fabric, reader: _Reader, start_seq: int, **kw: object) -> PullConsumer:
    consumer = fabric.pull_consumer(
        "cons.xs",
        "dsp-test",
        start_seq=start_seq,
        deliver=reader.deliver,
        credit=reader.credit,
        **kw,  # type: ignore[arg-type]
    )
    reader.consumer = consumer
    return consumer


async def test_delivers_from_the_start_sequence_in_order_paced_by_credit(fabric: Fabric) -> None:
    await fabric.ensure_stream("cons.xs")
    for i in range(10):
        await fabric.publish("cons.xs", {"i": i})
    reader = _Reader(batch=3)
    consumer = _consumer(fabric, reader, start_seq=4)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: len(reader.got) == 7, timeout=10, what="7 deliveries")
        tg.cancel_scope.cancel()
    assert reader.seqs() == list(range(4, 11))
    assert reader.got[-1].pending == 0
    assert consumer.next_seq == 11


async def test_a_consumer_deleted_by_the_server_is_recreated_where_it_was(
    fabric: Fabric, plain: NATS
) -> None:
    await fabric.ensure_stream("cons.xs")
    await fabric.publish("cons.xs", {"i": 1})
    reader = _Reader()
    consumer = _consumer(fabric, reader, start_seq=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: len(reader.got) == 1, timeout=10, what="first delivery")
        await plain.jetstream().delete_consumer("cons_xs", "dsp-test")
        await wait_until(lambda: consumer.resets >= 1, timeout=10, what="a reset")
        await fabric.publish("cons.xs", {"i": 2})
        await wait_until(lambda: len(reader.got) == 2, timeout=10, what="second delivery")
        tg.cancel_scope.cancel()
    assert reader.seqs() == [1, 2]


async def test_a_skip_the_stream_cannot_fill_is_delivered_as_a_gap(
    fabric: Fabric, plain: NATS
) -> None:
    await fabric.ensure_stream("cons.xs")
    for i in range(5):
        await fabric.publish("cons.xs", {"i": i})
    js = plain.jetstream()
    await js.delete_msg("cons_xs", 2)
    await js.delete_msg("cons_xs", 3)
    reader = _Reader()
    consumer = _consumer(fabric, reader, start_seq=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: len(reader.got) == 3, timeout=10, what="3 deliveries")
        tg.cancel_scope.cancel()
    assert reader.seqs() == [1, 4, 5]
    assert [d.gap_from for d in reader.got] == [None, 2, None]
    assert consumer.resets == 1  # the skip was re-checked once before it counted as a gap


async def test_a_consumer_silent_for_three_heartbeats_is_recreated(fabric: Fabric) -> None:
    await fabric.ensure_stream("cons.xs")
    clock = ManualClock()
    reader = _Reader()
    consumer = _consumer(
        fabric,
        reader,
        start_seq=1,
        clock=clock,
        settings=ConsumerSettings(heartbeat=5.0, expires=60.0),
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: consumer.outstanding > 0, timeout=10, what="a pull request")
        assert consumer.resets == 0
        await clock.advance(16.0)  # over 3 heartbeats of 5 s without a word
        consumer.wake()
        await wait_until(lambda: consumer.resets == 1, timeout=10, what="a reset")
        await fabric.publish("cons.xs", {"i": 1})
        await wait_until(lambda: len(reader.got) == 1, timeout=10, what="a delivery")
        tg.cancel_scope.cancel()


async def test_a_batch_completed_status_ends_no_request_the_server_still_serves(
    fabric: Fabric, plain: NATS
) -> None:
    """With ``max_bytes`` set, the server confirms a request whose batch was counted out with
    a "409 Batch Completed"; taking that for the next request's end made the consumer ask
    for more than its credit, one request more each time (an actor catching up on 64 KiB
    messages was disconnected as a slow consumer: over 64 MiB pending on its connection)."""
    await fabric.ensure_stream("cons.big")
    got: list[Delivery] = []
    consumer: PullConsumer | None = None

    def credit() -> tuple[int, int] | None:  # two requests of 8 open at any time
        assert consumer is not None
        return None if consumer.outstanding >= 16 else (8, 1 << 20)

    consumer = fabric.pull_consumer(
        "cons.big", "dsp-big", start_seq=1, deliver=got.append, credit=credit
    )

    async def open_requests() -> int:
        info = await plain.jetstream().consumer_info("cons_big", "dsp-big")
        return int(info.num_waiting or 0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        for want in (8, 16, 24):
            await wait_until(lambda: consumer.outstanding == 16, timeout=10, what="2 requests")
            for _ in range(8):  # one request's batch
                await fabric.publish_bytes("cons.big", b"x" * 65536)
            await wait_until(lambda: len(got) == want, timeout=10, what="the batch")  # noqa: B023
            await anyio.sleep(1.5)  # its status arrives; the consumer asks what it may
            # the server holds exactly the requests the consumer counts as open
            assert (await open_requests(), consumer.outstanding) == (2, 16)
        tg.cancel_scope.cancel()
    assert [d.seq for d in got] == list(range(1, 25))
