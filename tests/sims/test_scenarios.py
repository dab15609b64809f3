"""sims: scenario files are checked with errors naming the file and the field; a scenario runs
against a real nats-server and its report counts what was lost, duplicated and injected; the
``python -m sims`` command lists, checks and runs scenarios."""

from __future__ import annotations

import doctest
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

import sims
from diaspora.errors import ConfigError
from diaspora.testing import FaultKind
from sims import build_schedule, load_scenario, parse_scenario, run_scenario
from sims.cli import SCENARIOS, main, scenario_path
from tests.testing.trees import LOSSY

ROOT = Path(__file__).resolve().parents[2]
RELIABILITY = ROOT / "supervisors" / "reliability.toml"

PIPELINE_TRAFFIC = """
[traffic]
input = "reliability.requests"
output = "reliability.out"
model = "actors.pipeline:expected"
keys = 4
rate = 100
messages = 200
"""


def write_scenario(
    path: Path, body: str, *, tree: Path = RELIABILITY, description: str = "a test scenario"
) -> Path:
    head = f"description = {json.dumps(description)}\ntree = {json.dumps(str(tree))}\n"
    path.write_text(head + body)
    return path


# -- the file format --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            PIPELINE_TRAFFIC + '[[faults]]\nat = 1\nkind = "kill_servr"\n',
            r"bad\.toml: faults\[0\]\.kind: 'kill_servr' is not one of .* \(did you mean "
            r"'kill_server'\?\)",
        ),
        (
            PIPELINE_TRAFFIC + '[[faults]]\nat = 1\nkind = "crash"\n',
            r"bad\.toml: faults\[0\]: fault crash: needs a target \(an actor id\)",
        ),
        (
            PIPELINE_TRAFFIC + '[[faults]]\nat = 1\nkind = "crash"\ntarget = "root.nope"\n',
            r"bad\.toml: faults\[0\]\.target: 'root\.nope' is not an actor id of the tree; "
            r"known: root\.producer, root\.transform, root\.sink",
        ),
        (
            PIPELINE_TRAFFIC
            + '[[faults]]\nat = 1\nkind = "kill_process"\ntarget = "root.producer"\n',
            r"faults\[0\]\.target: 'root\.producer' is not a process node path",
        ),
        (
            PIPELINE_TRAFFIC + '[[faults]]\nat = 1\nkind = "blackhole"\nduration = 1\n',
            r"faults\[0\]\.kind: 'blackhole' is a link fault, but the scenario has no link: "
            r"set link = true",
        ),
        (
            PIPELINE_TRAFFIC + '[[faults]]\nat = 1\nkind = "bandwidth"\nduration = 1\n',
            r"faults\[0\]: fault bandwidth: needs rate \(bytes per second\)",
        ),
        (
            PIPELINE_TRAFFIC + '[[faults]]\nat = -2\nkind = "restart_server"\n',
            r"faults\[0\]\.at: -2 must be >= 0",
        ),
        (
            PIPELINE_TRAFFIC + '[[faults]]\nat = 1\nkind = "kill_server"\nduration = 3\n'
            '[[faults]]\nat = 2\nkind = "pause_server"\nduration = 1\n',
            r"faults\[1\]\.at: pause_server at 2s, but the server is still down or paused by "
            r"faults\[0\] until 4s",
        ),
        (
            PIPELINE_TRAFFIC + '[[faults]]\nat = 1\nkind = "crash"\ntarget = "root.sink"\n'
            "durration = 1\n",
            r"faults\[0\]\.durration: unknown key \(did you mean 'duration'\?\)",
        ),
        (
            PIPELINE_TRAFFIC.replace("rate = 100", "rate = 0"),
            r"bad\.toml: traffic\.rate: 0 must be > 0",
        ),
        (
            PIPELINE_TRAFFIC.replace("messages = 200", "messages = 200\nduration = 2"),
            r"traffic: give exactly one of 'messages' .* or 'duration'",
        ),
        (
            PIPELINE_TRAFFIC.replace("pipeline:expected", "pipeline:nothing"),
            r"bad\.toml: traffic\.model: 'actors\.pipeline:nothing': module 'actors\.pipeline' "
            r"has no attribute 'nothing'",
        ),
        (
            PIPELINE_TRAFFIC + '[random]\ncount = 2\nlayers = ["actor", "disk"]\n',
            r"random\.layers\[1\]: 'disk' is not one of actor, process, server, link",
        ),
        ("retries = 3\n" + PIPELINE_TRAFFIC, r"bad\.toml: retries: unknown key"),
    ],
)
def test_a_bad_scenario_file_is_refused_naming_the_file_and_the_field(
    tmp_path: Path, body: str, message: str
) -> None:
    path = write_scenario(tmp_path / "bad.toml", body)
    with pytest.raises(ConfigError, match=message):
        load_scenario(path)


def test_the_tree_path_is_relative_to_the_scenario_file(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    path = tmp_path / "scenarios" / "x.toml"
    path.write_text('description = "d"\ntree = "../tree.toml"\n' + PIPELINE_TRAFFIC)
    with pytest.raises(ConfigError, match=r"x\.toml: tree: '\.\./tree\.toml': no such file"):
        load_scenario(path)
    (tmp_path / "tree.toml").write_text(RELIABILITY.read_text())
    assert load_scenario(path).tree_path == tmp_path / "tree.toml"


def test_shipped_scenarios_are_valid_and_break_something() -> None:
    files = sorted(SCENARIOS.glob("*.toml"))
    assert len(files) >= 3
    for file in files:
        scenario = load_scenario(file)
        assert scenario.description
        assert build_schedule(scenario, scenario.seed), f"{file.name} injects no fault"
        assert scenario.traffic.duration < 30


def test_random_faults_are_one_schedule_per_seed_with_server_faults_kept_apart() -> None:
    scenario = load_scenario(SCENARIOS / "random_faults.toml")
    assert build_schedule(scenario, 3) == build_schedule(scenario, 3)
    assert build_schedule(scenario, 3) != build_schedule(scenario, 4)
    for seed in range(30):
        server = [t for t in build_schedule(scenario, seed) if t.fault.kind.layer == "server"]
        for earlier, later in pairwise(server):
            restart = earlier.fault.kind is FaultKind.RESTART_SERVER
            busy = 1.0 if restart else earlier.fault.duration
            assert busy is not None
            assert later.at >= earlier.at + busy, (seed, earlier, later)


def test_readme_example_is_the_shipped_edge_outage_scenario() -> None:
    readme = (ROOT / "sims" / "README.md").read_text()
    (block,) = [
        b
        for b in re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
        if b.startswith("# sims/scenarios/")
    ]
    example = parse_scenario(block, source="README.md", base=SCENARIOS)
    shipped = load_scenario(SCENARIOS / "edge_outage.toml")
    assert example.tree_path == shipped.tree_path
    assert (example.description, example.link, example.seed) == (
        shipped.description,
        shipped.link,
        shipped.seed,
    )
    assert example.traffic == shipped.traffic
    assert [(f.at, f.fault) for f in example.faults] == [(f.at, f.fault) for f in shipped.faults]


@pytest.mark.parametrize(
    "name",
    sorted(
        m.name
        for m in pkgutil.walk_packages(sims.__path__, "sims.")
        if not m.name.endswith("__main__")
    ),
)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


# -- runs against a real server ---------------------------------------------------------------


@pytest.mark.anyio
async def test_pipeline_survives_a_server_kill_and_a_process_kill_with_nothing_lost(
    tmp_path: Path,
) -> None:
    path = write_scenario(
        tmp_path / "short.toml",
        PIPELINE_TRAFFIC
        + '[[faults]]\nat = 0.5\nkind = "kill_server"\nduration = 1.0\n'
        + '[[faults]]\nat = 1.5\nkind = "kill_process"\ntarget = "root.transform"\n',
    )
    report = await run_scenario(load_scenario(path))
    assert (report.lost, report.duplicated, report.reordered, report.wrong) == (0, 0, 0, 0)
    assert report.problems == []
    assert report.ok
    assert (report.messages_sent, report.outputs_checked) == (200, 200)
    assert report.faults == {"kill_server": 1, "kill_process": 1}
    log = report.extra["fault_log"]
    assert [(e["kind"], e["target"], e["origin"]) for e in log] == [
        ("kill_server", "server", "faults[0]"),
        ("kill_process", "root.transform", "faults[1]"),
    ]
    assert all(isinstance(e["pid"], int) for e in log)
    assert log[0]["lifted_at_s"] > log[0]["at_s"]
    assert report.extra["orphans"] == []
    assert report.extra["latency_s"]["measured"] == 200


def test_a_lossy_workflow_fails_and_its_report_counts_the_lost_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "lossy_tree.toml"
    tree.write_text(LOSSY)
    path = write_scenario(
        tmp_path / "lossy.toml",
        "settle_timeout = 2.0\n"  # the lost outputs never come: do not wait long for them
        '[traffic]\ninput = "lossy.in"\noutput = "lossy.out"\nmodel = "sims.models:echo"\n'
        'keys = 2\nrate = 50\nmessages = 20\nvalues = "index"\n'
        '[[faults]]\nat = 0.1\nkind = "crash"\ntarget = "root.lossy"\n',
        tree=tree,
        description="drops the third input of every key",
    )
    report_path = tmp_path / "report.json"
    assert main(["run", str(path), "--report", str(report_path)]) == 1
    report = json.loads(report_path.read_text())
    assert report["name"] == "lossy"
    assert (report["lost"], report["duplicated"], report["wrong"]) == (2, 0, 0)
    assert report["ok"] is False
    assert report["faults"] == {"crash": 1}
    assert any("missing outputs for inputs [2]" in p for p in report["problems"])
    out, err = capsys.readouterr()
    assert "lossy (seed 0): FAILED: 20 sent, 18 outputs checked" in out
    # the plots lie next to the report; off a terminal no progress bar is drawn
    for what in ("lag", "recovery", "throughput"):
        png = tmp_path / f"report.{what}.png"
        assert png.read_bytes().startswith(b"\x89PNG"), png
        assert f"{png}" in out
    assert report["extra"]["progress"]
    assert {"t_s", "sent", "acked", "outputs"} <= set(report["extra"]["progress"][0])
    assert "\r" not in err
    assert "━" not in err


def test_a_run_with_a_restart_no_fault_asked_for_says_so_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "once_tree.toml"
    tree.write_text(
        '[supervisor]\nintensity = 5\n[[supervisor.children]]\nid = "once"\n'
        'actor = "tests.testing.workflow_actors:ExitsOnce"\nprocess = true\n'
        f"args = {{ marker = {json.dumps(str(tmp_path / 'exited'))} }}\n"
    )
    path = write_scenario(
        tmp_path / "once.toml",
        '[traffic]\ninput = "once.in"\noutput = "once.out"\nmodel = "sims.models:echo"\n'
        'keys = 2\nrate = 50\nmessages = 40\nvalues = "index"\n',
        tree=tree,
    )
    report_path = tmp_path / "report.json"
    assert main(["run", str(path), "--report", str(report_path)]) == 3
    report = json.loads(report_path.read_text())
    assert report["ok"] is True  # every output right: the restart is what is reported
    assert report["extra"]["unplanned"] == {"restarts": {"root.once": 1}, "crashes": []}
    out = capsys.readouterr().out
    assert "once (seed 0): OK, WITH UNPLANNED RESTARTS OR CRASHES: 40 sent" in out
    assert "unplanned: restarts root.once x1" in out


def test_run_takes_the_names_list_shows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names
    for name in names:
        path = scenario_path(name)
        assert path.parent == SCENARIOS
        assert path.is_file()
        assert load_scenario(path).name == name
    assert main(["check", names[0]]) == 0
    assert main(["run", "no_such_scenario"]) == 2
    err = capsys.readouterr().err
    assert "no_such_scenario: neither a scenario file nor a scenario name" in err
    assert all(name in err for name in names)


# -- the command ------------------------------------------------------------------------------


def sims_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sims", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_command_lists_and_checks_scenarios(tmp_path: Path) -> None:
    listed = sims_command("list")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == sorted(path.stem for path in SCENARIOS.glob("*.toml"))
    assert "edge_outage    server killed 3 s mid-stream" in listed.stdout

    checked = sims_command("check", "sims/scenarios/edge_outage.toml")
    assert checked.returncode == 0, checked.stderr
    assert "sims/scenarios/edge_outage.toml: ok: edge_outage: 2000 messages" in checked.stdout
    assert "kill_server for 3s" in checked.stdout

    bad = write_scenario(tmp_path / "bad.toml", PIPELINE_TRAFFIC + "[[faults]]\nat = 1\n")
    refused = sims_command("check", str(bad))
    assert refused.returncode == 2
    assert f"sims: {bad}: faults[0]: missing required key 'kind'" in refused.stderr
