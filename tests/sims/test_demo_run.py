"""The demo's engine on a small two-site tree: the twin's sites, bridges, the tree on its sites,
a scheduled cut of the uplink, the counters and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from diaspora.workflow import parse_config
from sims.demo._observe import Counter, LinkLag, Sample, Tail
from sims.demo._report import write_report
from sims.demo._run import Plan, run_on_twin
from sims.twin import Twin
from sims.twinspec import TwinFault, TwinFaultKind, parse_twin
from tests.sites_rig import EDGE_SUM, TWO_SITES

pytestmark = pytest.mark.anyio

TWIN = """
description = "an edge under an HPC centre"
[sites.hpc]
domain = "hpc"
[sites.edge]
domain = "edge"
parent = "hpc"
[links.edge]
latency = 0.002
bandwidth = 5e6
"""

TREE = (
    TWO_SITES
    + EDGE_SUM
    + """
[[supervisor.children]]
id = "archive"
actor = "actors.examples:Archive"
args = { to = "hpc.archive" }
inputs = ["edge.sums"]

[streams."edge.sums"]
limits = { max_msgs = 100000 }

[[bridges]]
subject = "edge.sums"
from = "edge"
to = "hpc"
"""
)

N = 300


async def test_a_tree_runs_on_the_twin_through_a_cut_and_the_report_shows_it(
    tmp_path: Path,
) -> None:
    sent = 0

    async def feed(sample: Sample, twin: Twin) -> None:
        nonlocal sent
        edge = twin.fabrics["edge"]
        for _ in range(min(50, N - sent)):
            sent += 1
            await edge.publish("edge.numbers", {"x": sent}, msg_id=f"n{sent}")

    def done(sample: Sample, records: dict[str, list[dict[str, Any]]]) -> bool:
        return sent == N and len(records["hpc.archive"]) >= N

    plan = Plan(
        counters=(
            Counter("numbers", "edge", "edge.numbers"),
            Counter("archived", "hpc", "hpc.archive"),
        ),
        lags=(LinkLag("uplink", "edge.sums", "edge", "hpc"),),
        tails=(Tail("hpc", "hpc.archive"),),
        status=lambda sample, records: {"t": sample.t, **sample.counts},
        done=done,
    )
    schedule = (TwinFault(1.0, TwinFaultKind.CUT_LINK, site="edge", duration=2.0),)
    config = parse_config(TREE, source="tree.toml")
    result = await run_on_twin(
        config, parse_twin(TWIN), plan, seconds=40, schedule=schedule, interval=0.5, on_sample=feed
    )
    assert result.stopped_early  # everything arrived well before the 40 s
    totals = [r["total"] for r in result.records["hpc.archive"]]
    assert totals == [n * (n + 1) // 2 for n in range(1, N + 1)]  # each once, in order
    (fault,) = result.faults
    assert fault.kind == "cut_link"
    assert fault.lifted_s is not None
    assert max(s.lags["uplink"] or 0 for s in result.samples) > 0  # the cut held sums back
    body = write_report(tmp_path, result, {"summary": {"sent": sent}, "checks": {"all": True}})
    assert json.loads((tmp_path / "report.json").read_text())["faults"][0]["kind"] == "cut_link"
    assert "cut_link edge duration=2.0" in (tmp_path / "report.md").read_text()
    assert {"rates", "lag"} <= set(body["plots"])
    assert (tmp_path / "lag.png").stat().st_size > 1000


def test_the_demo_command_says_what_is_wrong_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from diaspora.cli import main

    with pytest.raises(SystemExit) as help_:
        main(["demo", "--help"])
    assert help_.value.code == 0
    assert "--faults" in capsys.readouterr().out
    assert main(["demo", "ptychography", "--minutes", "0"]) == 2
    assert main(["demo", "ptychography", "--change-at", "-1"]) == 2
    assert "--change-at must be a scan number >= 0" in capsys.readouterr().err
    bad = tmp_path / "faults.toml"
    bad.write_text('[[faults]]\nat = 1\nkind = "cut_link"\nsite = "hpc"\n')
    assert main(["demo", "ptychography", "--faults", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "faults[0].site: 'hpc' is not a site with an uplink (edge)" in err
