"""Fabric: streams, KV, object store, large payloads, reconnects, events — on real servers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import nats
import numpy as np
import pytest
import structlog

from diaspora import codec
from diaspora.errors import ConfigError, FabricUnavailable
from diaspora.events import Crashed, GaveUp, Lag, Reconnected, decode_record
from diaspora.fabric import EmbeddedServer, Fabric, StreamLimits, free_port
from diaspora.fabric import headers as H
from diaspora.testing import wait_until

pytestmark = pytest.mark.anyio


async def test_ensure_stream_is_idempotent_and_applies_limits(fabric: Fabric) -> None:
    first = await fabric.ensure_stream("edge1.patterns", max_msgs=10, duplicate_window=30)
    again = await fabric.ensure_stream("edge1.patterns", max_msgs=10, duplicate_window=30)
    assert first.config.name == again.config.name == "edge1_patterns"
    assert again.config.subjects == ["edge1.patterns"]
    for i in range(15):
        await fabric.publish("edge1.patterns", {"i": i})
    info = await fabric.js.stream_info("edge1_patterns")
    assert info.state.messages == 10
    assert info.state.first_seq == 6

    # changing limits updates the stream; the duplicate window never shrinks
    updated = await fabric.ensure_stream("edge1.patterns", max_msgs=20, duplicate_window=5)
    assert updated.config.max_msgs == 20
    assert updated.config.duplicate_window == 30


async def test_two_subjects_with_the_same_stream_name_are_refused(fabric: Fabric) -> None:
    await fabric.ensure_stream("a.b_c")
    with pytest.raises(ConfigError, match=r"stream 'a_b_c' already captures \['a.b_c'\]"):
        await fabric.ensure_stream("a_b.c")


@pytest.mark.parametrize(
    ("subject", "message"),
    [
        ("", "not a subject"),
        ("a.*", "not a literal NATS subject"),
        ("a..b", "not a literal NATS subject"),
        ("diaspora.events.x", "reserved prefix"),
    ],
)
async def test_bad_subjects_are_named(fabric: Fabric, subject: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await fabric.ensure_stream(subject)


def test_stream_limits_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_msgs=0 must be positive"):
        StreamLimits(max_msgs=0)
    with pytest.raises(ConfigError, match="exceeds max_age=10s"):
        StreamLimits(max_age=10, duplicate_window=60)


async def test_duplicate_msg_ids_are_dropped(fabric: Fabric) -> None:
    await fabric.ensure_stream("dedup")
    a = await fabric.publish("dedup", {"x": 1}, msg_id="m-1")
    b = await fabric.publish("dedup", {"x": 1}, msg_id="m-1")
    assert not a.duplicate
    assert b.duplicate
    assert b.seq == a.seq


async def test_kv_and_object_store_are_ensured_idempotently(fabric: Fabric) -> None:
    kv = await fabric.ensure_kv("checkpoints")
    await kv.put("k", b"v")
    assert (await (await fabric.ensure_kv("checkpoints")).get("k")).value == b"v"
    obs = await fabric.ensure_object_store("weights")
    await obs.put("w", b"x" * 1000)
    assert (await (await fabric.ensure_object_store("weights")).get("w")).data == b"x" * 1000


async def test_payloads_over_the_inline_limit_travel_through_the_object_store(
    fabric: Fabric,
) -> None:
    await fabric.ensure_stream("big")
    frame = np.random.default_rng(0).random((1200, 1200))  # 11 MB of float64
    assert frame.nbytes > fabric.inline_limit
    small = np.ones(1000)
    await fabric.publish("big", {"frame": frame}, msg_id="big-1")
    await fabric.publish("big", {"frame": small})
    sub = await fabric.js.pull_subscribe("big", durable=None)
    msgs = await sub.fetch(2, timeout=5)
    assert msgs[0].headers is not None
    assert msgs[0].headers[H.BLOB] == "diaspora-blobs/big-1"
    assert int(msgs[0].headers[H.BLOB_SIZE]) > fabric.inline_limit
    assert msgs[0].data == b""
    assert np.array_equal(codec.decode(await fabric.payload_of(msgs[0]))["frame"], frame)
    assert msgs[1].headers is None or H.BLOB not in msgs[1].headers
    assert np.array_equal(codec.decode(await fabric.payload_of(msgs[1]))["frame"], small)


async def test_unreachable_url_fails_with_a_clear_error() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(FabricUnavailable, match=rf"cannot reach NATS at nats://127.0.0.1:{port}"):
        async with Fabric(f"nats://127.0.0.1:{port}", connect_timeout=1.0):
            pass
    assert time.monotonic() - started < 10


async def test_reconnects_after_server_restart_and_logs_each_state(
    nats_server: EmbeddedServer,
) -> None:
    async with Fabric(nats_server.url, backoff_initial=0.02, backoff_max=0.2) as fabric:
        await fabric.ensure_stream("survive")
        with structlog.testing.capture_logs() as logs:
            await nats_server.kill()
            await wait_until(lambda: not fabric.is_connected, what="disconnect noticed")
            await nats_server.restart()
            await fabric.wait_connected(timeout=20)
            await wait_until(
                lambda: any(e["event"] == "reconnected" for e in logs), what="reconnected event"
            )
        events = [e["event"] for e in logs]
        (reconnected,) = [e for e in logs if e["event"] == "reconnected"]
        assert reconnected["fabric"] == fabric.name
        assert reconnected["url"] == nats_server.url
        assert reconnected["down_s"] > 0
        assert "fabric_disconnected" in events
        assert "fabric_reconnecting" in events
        assert "fabric_reconnected" in events
        attempts = [e for e in logs if e["event"] == "fabric_reconnecting"]
        assert all(e["backoff_s"] <= 0.2 for e in attempts)
        ack = await fabric.publish("survive", {"ok": True}, timeout=5)
        assert ack.seq == 1


async def test_reconnect_listeners_are_called_once_per_reconnect_until_removed(
    nats_server: EmbeddedServer,
) -> None:
    calls: list[int] = []
    async with Fabric(nats_server.url, backoff_initial=0.02, backoff_max=0.2) as fabric:
        remove = fabric.on_reconnect(lambda: calls.append(fabric.reconnects))
        fabric.on_reconnect(lambda: 1 / 0)  # a broken listener does not stop the others
        for _ in range(2):
            await nats_server.kill()
            await wait_until(lambda: not fabric.is_connected, what="disconnect noticed")
            await nats_server.restart()
            await fabric.wait_connected(timeout=20)
        assert calls == [1, 2]
        remove()
        await nats_server.restart()
        await wait_until(lambda: fabric.reconnects == 3, timeout=20, what="third reconnect")
        assert calls == [1, 2]


async def test_events_are_published_under_diaspora_events_and_decode_typed(
    fabric: Fabric,
) -> None:
    plain = await nats.connect(fabric.urls[0])  # any NATS client, no diaspora
    try:
        sub = await plain.subscribe("diaspora.events.>")
        await plain.flush()
        event = Crashed(name="sum.1", reason="boom", seq=3)
        await fabric.emit(event)
        msg = await sub.next_msg(timeout=5)
    finally:
        await plain.close()
    assert msg.subject == "diaspora.events.actor.sum_1.crashed"
    record = codec.decode(msg.data)
    assert record["category"] == "actor"
    assert record["name"] == "sum.1"
    assert record["kind"] == "crashed"
    assert record["reason"] == "boom"
    assert record["seq"] == 3
    assert isinstance(record["time"], float)
    assert decode_record(record) == event
    # and captured durably by the events stream
    info = await fabric.js.stream_info("DIASPORA_EVENTS")
    assert info.state.messages >= 1


async def test_fabric_logs_each_event_at_the_level_of_its_type(fabric: Fabric) -> None:
    with structlog.testing.capture_logs() as logs:
        await fabric.emit(Lag(name="sum", lag=5))
        await fabric.emit(Crashed(name="sum", reason="boom"))
        await fabric.emit(
            GaveUp(name="root", child="sum", reason="boom", restarts=4, intensity=3, period=5.0)
        )
    lines = [
        (e["event"], e["log_level"]) for e in logs if e["event"] in ("lag", "crashed", "gave_up")
    ]
    assert lines == [("lag", "info"), ("crashed", "warning"), ("gave_up", "error")]
    (gave_up,) = [e for e in logs if e["event"] == "gave_up"]
    assert {k: gave_up[k] for k in ("supervision", "supervisor", "child")} == {
        "supervision": "root",
        "supervisor": "root",
        "child": "sum",
    }


async def test_emit_never_raises_once_the_fabric_is_closed(nats_server: EmbeddedServer) -> None:
    async with Fabric(nats_server.url) as fabric:
        pass
    with structlog.testing.capture_logs() as logs:
        await fabric.emit(Reconnected(name=fabric.name, url=None, down_s=None))
    assert [e["event"] for e in logs] == ["reconnected"]  # logged, not published


async def test_close_callbacks_run_last_first_while_still_connected_and_one_failure_spares_the_rest(
    nats_server: EmbeddedServer,
) -> None:
    calls: list[tuple[str, bool]] = []
    fabric = Fabric(nats_server.url, name="closers")
    await fabric.connect()

    def closer(name: str, fail: bool = False) -> Callable[[], Awaitable[None]]:
        async def close() -> None:
            calls.append((name, fabric.is_connected))
            if fail:
                raise RuntimeError(f"{name} failed")

        return close

    fabric.on_close(closer("first"))
    fabric.on_close(closer("fails", fail=True))
    remove = fabric.on_close(closer("removed"))
    fabric.on_close(closer("last"))
    remove()
    await fabric.close()
    assert calls == [("last", True), ("fails", True), ("first", True)]
    await fabric.close()  # called once only
    assert len(calls) == 3
