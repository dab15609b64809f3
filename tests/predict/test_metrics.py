"""The metrics source against a real nats-server's monitoring port."""

from __future__ import annotations

import anyio
import pytest

from diaspora import Actor, ActorRuntime, Message
from diaspora.errors import ConfigError, FabricUnavailable
from diaspora.events import decode_record
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric._monitoring import monitoring_json
from diaspora.predict import (
    AlertRule,
    Condition,
    MetricsSpec,
    MonitorSpec,
    metrics_runtime,
    monitor_runtime,
)
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream

pytestmark = pytest.mark.anyio


class Stuck(Actor):
    """Takes its inputs and never finishes one: they stay unacknowledged."""

    inputs = ("jobs",)

    async def handle(self, msg: Message) -> None:
        await anyio.sleep_forever()


async def test_consumer_backlog_and_connections_reach_monitors_as_numbers(
    nats_server: EmbeddedServer, fabric: Fabric
) -> None:
    url = f"http://127.0.0.1:{nats_server.monitor_port}"
    await fabric.ensure_stream("jobs")
    stuck = ActorRuntime(Stuck, fabric, id="stuck")
    source = metrics_runtime(MetricsSpec(url, period=0.1), fabric)
    spec = MonitorSpec(
        "backlog", "metrics.jsz.num_ack_pending", key="name", value="value", time="t",
        alert=AlertRule(Condition("value", ">", 5.0)),
    )  # fmt: skip
    monitor = monitor_runtime(spec, fabric)
    async with anyio.create_task_group() as tg:
        await tg.start(stuck.run)
        for i in range(7):  # taken by the stuck actor: 7 unacknowledged on its consumer
            await fabric.publish("jobs", {"i": i})
        await tg.start(source.run)
        await tg.start(monitor.run)

        async def warned() -> bool:
            first, last = await fabric.stream_bounds("diaspora.events.monitor.backlog.warning")
            return last >= first

        await wait_until(warned, timeout=20)
        tg.cancel_scope.cancel()
    (warning,) = [
        decode_record(m.data)
        for m in await read_stream(fabric, "diaspora.events.>")
        if m.subject == "diaspora.events.monitor.backlog.warning"
    ]
    assert (warning.key, warning.value) == ("jobs/dsp-stuck", 7.0)  # <stream>/<consumer>
    rtts = [m.data for m in await read_stream(fabric, "metrics.connz.rtt_s")]
    assert rtts
    assert all(r["value"] >= 0.0 for r in rtts)


async def test_an_unreachable_monitoring_port_is_an_error_naming_it() -> None:
    with pytest.raises(FabricUnavailable, match=r"monitoring http://127\.0\.0\.1:1/connz"):
        await monitoring_json("http://127.0.0.1:1", "connz", timeout=2)
    with pytest.raises(ConfigError, match=r"metrics\.endpoints: 'varz' is not one of"):
        MetricsSpec("http://127.0.0.1:8222", endpoints=("varz",))
