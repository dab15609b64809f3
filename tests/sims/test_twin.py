"""The infrastructure twin: real servers per site, a shaped proxy on each uplink, a schedule."""

from __future__ import annotations

import re
import time
from pathlib import Path

import anyio
import pytest

from diaspora import codec
from diaspora.errors import ConfigError, FabricUnavailable
from diaspora.fabric import Bridge, Fabric, Inbound, ensure_bridge, read_stored
from diaspora.testing import wait_until
from sims.linkpredict import echo_subject
from sims.twin import Twin
from sims.twinspec import TwinFaultKind, load_schedule, load_twin, mathis_rate, parse_twin

ROOT = Path(__file__).resolve().parents[2]

TWO = """
description = "an edge under an HPC centre"
[sites.hpc]
domain = "hpc"
hosts = { a = 2, b = 1 }
[sites.edge]
domain = "edge"
parent = "hpc"
[links.edge]
latency = 0.03
"""


def test_the_shipped_twin_and_faults_files_are_valid() -> None:
    twin = load_twin(ROOT / "sims" / "twins" / "ptychography.toml")
    assert {s.name for s in twin.sites} == {"edge", "hpc"}
    assert twin.links["edge"].rate is not None  # bandwidth and loss make a cap
    faults = load_schedule(ROOT / "sims" / "twins" / "ptychography_faults.toml", twin)
    kinds = {f.kind for f in faults}
    assert {
        TwinFaultKind.CUT_LINK,
        TwinFaultKind.KILL_PROCESS,
        TwinFaultKind.RESTART_SERVER,
    } <= kinds


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[links.hpc]\nlatency = 1\n", "links.hpc: 'hpc' is not a site with a parent"),
        ("[links.edge]\nlatncy = 1\n", "did you mean 'latency'"),
        (
            '[[schedule]]\nat = 1\nkind = "cut_link"\nsite = "hpc"\n',
            "schedule[0].site: 'hpc' is not a site with an uplink (edge)",
        ),
        (
            '[[schedule]]\nat = 1\nkind = "blackhole"\nsite = "edge"\n',
            "schedule[0]: blackhole needs a duration",
        ),
        ('[[schedule]]\nat = 1\nkind = "nap"\nsite = "edge"\n', "schedule[0].kind: 'nap' is not"),
    ],
)
def test_a_bad_twin_file_names_the_field(extra: str, message: str) -> None:
    base = TWO.replace("[links.edge]\nlatency = 0.03\n", "")
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_twin(base + extra, source="t.toml")


def test_loss_lowers_the_cap_to_what_tcp_keeps() -> None:
    twin = parse_twin(TWO + "bandwidth = 1e9\nloss = 0.01\n", source="t.toml")
    assert twin.links["edge"].rate == pytest.approx(mathis_rate(0.06, 0.01))
    assert twin.slots("hpc") == 3
    assert twin.slots("edge") == 1


@pytest.mark.anyio
async def test_the_twin_shapes_the_uplink_and_its_predictor_measures_it() -> None:
    async with Twin(parse_twin(TWO), probe_interval=None) as twin:
        sample = await twin.predictors["edge"].probe() if twin.predictors else None
        assert sample is None  # no predictors without probe_interval
        edge, hpc = twin.fabrics["edge"], twin.fabrics["hpc"]
        async with hpc.subscription(echo_subject("x"), _echo, flush=True):
            await _answered(edge, echo_subject("x"))
            started = time.monotonic()
            await edge.request(echo_subject("x"), b"", timeout=5)
            assert time.monotonic() - started >= 0.06  # 30 ms each way, through the proxy


async def _echo(msg: Inbound) -> None:
    await msg.respond(b"")


async def _answered(fabric: Fabric, subject: str) -> None:
    async def answers() -> bool:
        try:
            await fabric.request(subject, b"", timeout=1)
        except FabricUnavailable:
            return False
        return True

    await wait_until(answers, what=f"an answer on {subject}")


@pytest.mark.anyio
async def test_a_scheduled_outage_cuts_the_uplink_and_it_heals() -> None:
    spec = parse_twin(
        TWO + '[[schedule]]\nat = 0.5\nkind = "cut_link"\nsite = "edge"\nduration = 2.0\n'
    )
    async with Twin(spec, probe_interval=0.2) as twin:
        edge, hpc = twin.fabrics["edge"], twin.fabrics["hpc"]
        await edge.ensure_stream("edge.frames")
        await ensure_bridge(hpc, Bridge("edge.frames", "edge", "hpc"))
        predictor = twin.predictors["edge"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(twin.run_schedule)
            await wait_until(lambda: bool(twin.log) and twin.log[0].at_s is not None, what="cut")
            for i in range(20):  # published at the edge while it is cut off: buffered there
                await edge.publish("edge.frames", {"i": i}, msg_id=f"f{i}")
            await wait_until(lambda: not predictor.up, what="the predictor sees the link down")
        (record,) = twin.log
        assert record.error is None
        assert record.lifted_s is not None
        assert record.at_s is not None
        # the twin rounds its times to the millisecond (and 2.502 - 0.502 is 1.9999999999999998)
        assert record.lifted_s - record.at_s >= 2.0 - 2e-3
        await twin.sites.wait_linked("edge", timeout=15)

        async def copied() -> bool:  # the copy at the hub fills once the link is back
            return (await hpc.stream_bounds("edge.frames"))[1] >= 20

        await wait_until(copied, timeout=30, what="20 frames at the hub")
        stored = [codec.decode(m.payload)["i"] async for m in read_stored(hpc, "edge.frames")]
        assert stored == list(range(20))
        await wait_until(lambda: predictor.up, what="the predictor sees the link up")
        report = twin.report()
        assert report["predicted"]["edge"]["down_probes"] >= 1
        assert report["faults"][0]["kind"] == "cut_link"
