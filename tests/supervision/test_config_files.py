"""Supervision trees in TOML files: parsed into the same specs a Python user builds;
every malformed file is refused before anything starts, with the file and field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.examples import RunningSum, Scale
from diaspora.cli import main
from diaspora.errors import ConfigError
from diaspora.log import configure_logging
from diaspora.supervision import Backoff, ChildSpec, Restart, Strategy, SupervisorSpec
from diaspora.workflow import (
    ActorStart,
    ProcessStart,
    actor_child,
    load_config,
    parse_config,
    process_child,
)

# main() configures logging on first use, binding sys.stderr as it is then: not a capsys
# stream that is closed after the test (later log lines would fail on a closed file).
configure_logging()

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "supervisors").glob("*.toml"))
FILE = "supervisors/ptycho.toml"

SUM = """
[[supervisor.children]]
id = "sum"
actor = "actors.examples:RunningSum"
"""
SCALE = """
[[supervisor.children]]
id = "scale"
actor = "actors.examples:Scale"
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # actors.examples
    monkeypatch.chdir(tmp_path)


def write(text: str) -> str:
    path = Path(FILE)
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return FILE


def test_file_is_parsed_into_the_specs_python_builds() -> None:
    config = load_config(
        write(
            """
[fabric]
url = "nats://127.0.0.1:4222"

[supervisor]
strategy = "rest_for_one"
intensity = 3
period = 5

[supervisor.backoff]
initial = 0.2
max = 4
jitter = 0

[[supervisor.children]]
id = "scale"
actor = "actors.examples:Scale"
args = { factor = 2.5 }
inputs = ["raw.numbers"]
shutdown = "brutal_kill"

[[supervisor.children]]
id = "sum"
actor = "actors.examples:RunningSum"
restart = "transient"
process = true
heartbeat_timeout = 2
args = { scale = 2 }

[[supervisor.children]]
id = "stage"
strategy = "one_for_all"
process = true
shutdown = "infinity"

[[supervisor.children.children]]
id = "inner"
actor = "actors.examples:Scale"
restart = "temporary"
"""
        )
    )
    expected = SupervisorSpec(
        [
            actor_child(
                "scale", Scale, args={"factor": 2.5}, inputs=["raw.numbers"], shutdown="brutal_kill"
            ),
            actor_child(
                "sum",
                RunningSum,
                args={"scale": 2},
                restart=Restart.TRANSIENT,
                process=True,
                heartbeat_timeout=2.0,
            ),
            process_child(
                "stage",
                SupervisorSpec(
                    [actor_child("inner", Scale, restart=Restart.TEMPORARY)],
                    strategy=Strategy.ONE_FOR_ALL,
                ),
                shutdown="infinity",
            ),
        ],
        strategy=Strategy.REST_FOR_ONE,
        intensity=3,
        period=5.0,
        backoff=Backoff(initial=0.2, max=4.0, jitter=0.0),
    )
    assert config.spec == expected
    assert config.name == "root"
    assert config.url == ("nats://127.0.0.1:4222",)
    assert config.source == FILE
    assert config.summary() == (
        "supervisor 'root' (rest_for_one) with 1 supervisor, 3 actors, 2 process nodes below it"
    )


def test_nested_supervisor_and_actor_children_are_the_types_python_builds() -> None:
    config = parse_config(
        '[supervisor]\nname = "edge1"\n'
        + SUM
        + '[[supervisor.children]]\nid = "sub"\nchildren = []\n'
    )
    sum_child, sub = config.spec.children
    assert isinstance(sum_child, ChildSpec)
    assert isinstance(sum_child.start, ActorStart)
    assert sum_child.start.actor is RunningSum
    assert isinstance(sub.start, SupervisorSpec)
    assert config.name == "edge1"


@pytest.mark.parametrize("key", ["qos", "streams"])
def test_a_childs_stream_keys_are_refused_for_the_top_level_streams_table(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("[supervisor]\n" + SUM + f"{key} = {{ rate = 10.0 }}\n", source=FILE)
    message = str(caught.value)
    assert message.startswith(f"{FILE}: supervisor.children[0].{key}: a stream's QoS")
    assert '[streams."<subject>"]' in message


def test_the_top_level_streams_table_carries_a_streams_limits() -> None:
    config = parse_config(
        "[streams]\nnumbers = { limits = { max_age = 600 } }\n[supervisor]\n" + SUM
    )
    limits = config.streams["numbers"].limits
    assert limits is not None
    assert limits.max_age == 600
    assert isinstance(config.spec.children[0].start, ActorStart)


def test_unset_supervisor_flags_take_the_specs_defaults() -> None:
    assert parse_config("[supervisor]\n" + SUM).spec == SupervisorSpec(
        [actor_child("sum", RunningSum)]
    )


def test_process_node_of_a_nested_supervisor_keeps_its_subtree() -> None:
    config = parse_config(
        '[supervisor]\n[[supervisor.children]]\nid = "stage"\nprocess = true\n'
        'strategy = "rest_for_one"\n[[supervisor.children.children]]\nid = "sum"\n'
        'actor = "actors.examples:RunningSum"\n'
    )
    start = config.spec.children[0].start
    assert isinstance(start, ProcessStart)
    assert isinstance(start.target, SupervisorSpec)
    assert start.target.strategy is Strategy.REST_FOR_ONE


BAD = [
    ("toml syntax", "[supervisor\n", [f"{FILE}: invalid TOML", "line 1"]),
    ("empty file", "", [f"{FILE}: missing required table [supervisor]"]),
    ("unknown top key", "[supervisors]\n", [f"{FILE}: supervisors: unknown key"]),
    (
        "unknown child key",
        "[supervisor]\n" + SUM + 'restrat = "permanent"\n',
        [
            f"{FILE}: supervisor.children[0].restrat: unknown key (did you mean 'restart'?)",
            "expected one of actor, args,",
        ],
    ),
    (
        "unknown restart",
        "[supervisor]\n" + SUM + SCALE + SUM.replace('"sum"', '"sum2"') + 'restart = "sometimes"\n',
        [
            f"{FILE}: supervisor.children[2].restart: 'sometimes' is not one of "
            "permanent, transient, temporary"
        ],
    ),
    (
        "unknown strategy",
        '[supervisor]\nstrategy = "one_for_some"\n',
        [
            f"{FILE}: supervisor.strategy: 'one_for_some' is not one of "
            "one_for_one, one_for_all, rest_for_one, simple_one_for_one"
        ],
    ),
    (
        "intensity wrong type",
        '[supervisor]\nintensity = "3"\n',
        [f"{FILE}: supervisor.intensity: '3' is not an integer"],
    ),
    (
        "intensity negative",
        "[supervisor]\nintensity = -1\n",
        [f"{FILE}: supervisor.intensity: -1 must be >= 0"],
    ),
    (
        "period wrong type",
        "[supervisor]\nperiod = true\n",
        [f"{FILE}: supervisor.period: True is not a finite number of seconds > 0"],
    ),
    (
        "process wrong type",
        "[supervisor]\n" + SUM + 'process = "yes"\n',
        [f"{FILE}: supervisor.children[0].process: 'yes' is a string, expected true or false"],
    ),
    (
        "shutdown policy",
        "[supervisor]\n" + SUM + 'shutdown = "never"\n',
        [f"{FILE}: supervisor.children[0].shutdown: 'never' is not a shutdown policy"],
    ),
    (
        "args not a table",
        "[supervisor]\n" + SUM + "args = 3\n",
        [f"{FILE}: supervisor.children[0].args: 3 is an integer, expected a table"],
    ),
    (
        "args the actor does not take",
        "[supervisor]\n" + SUM + "args = { scael = 2 }\n",
        [f"{FILE}: supervisor.children[0].args: RunningSum(", "{'scael': 2}", "scael"],
    ),
    (
        "inputs not a list",
        "[supervisor]\n" + SUM + 'inputs = "numbers"\n',
        [f"{FILE}: supervisor.children[0].inputs: 'numbers' is a string, expected an array"],
    ),
    (
        "inputs wildcard",
        "[supervisor]\n" + SUM + 'inputs = ["ok", "numbers.>"]\n',
        [
            f"{FILE}: supervisor.children[0].inputs[1]: 'numbers.>' has a wildcard: "
            "only an event input (a subject under 'diaspora.events.'"
        ],
    ),
    (
        "actor module does not import",
        '[supervisor]\n[[supervisor.children]]\nid = "x"\nactor = "nowhere.at_all:X"\n',
        [f"{FILE}: supervisor.children[0].actor: 'nowhere.at_all:X': cannot import module"],
    ),
    (
        "actor attribute missing",
        '[supervisor]\n[[supervisor.children]]\nid = "x"\nactor = "actors.examples:Nope"\n',
        [f"{FILE}: supervisor.children[0].actor:", "has no attribute 'Nope'"],
    ),
    (
        "actor not an Actor",
        '[supervisor]\n[[supervisor.children]]\nid = "x"\nactor = "diaspora.fabric:Fabric"\n',
        [
            f"{FILE}: supervisor.children[0].actor: 'diaspora.fabric:Fabric' is the class "
            "Fabric, not a diaspora Actor subclass"
        ],
    ),
    (
        "actor wrong type",
        '[supervisor]\n[[supervisor.children]]\nid = "x"\nactor = 3\n',
        [f"{FILE}: supervisor.children[0].actor: 3 is an integer, expected a string"],
    ),
    (
        "duplicate ids",
        "[supervisor]\n" + SUM + SUM,
        [f"{FILE}: supervisor.children[1].id: duplicate id 'sum' (also children[0])"],
    ),
    (
        "bad id",
        '[supervisor]\n[[supervisor.children]]\nid = "a.b"\nchildren = []\n',
        [f"{FILE}: supervisor.children[0].id: 'a.b' is not a child id"],
    ),
    (
        "missing id",
        '[supervisor]\n[[supervisor.children]]\nactor = "actors.examples:Scale"\n',
        [f"{FILE}: supervisor.children[0]: missing required key 'id'"],
    ),
    (
        "neither actor nor children",
        '[supervisor]\n[[supervisor.children]]\nid = "x"\nrestart = "permanent"\n',
        [f"{FILE}: supervisor.children[0]: needs 'actor'"],
    ),
    (
        "both actor and children",
        "[supervisor]\n" + SUM + "children = []\n",
        [f"{FILE}: supervisor.children[0]: has both 'actor'"],
    ),
    (
        "heartbeat without process",
        "[supervisor]\n" + SUM + "heartbeat_timeout = 2\n",
        [
            f"{FILE}: supervisor.children[0].heartbeat_timeout: only applies to a child "
            "with process = true"
        ],
    ),
    (
        "heartbeat not positive",
        "[supervisor]\n" + SUM + "process = true\nheartbeat_timeout = 0\n",
        [f"{FILE}: supervisor.children[0].heartbeat_timeout: 0 must be > 0 seconds"],
    ),
    (
        "nested field path",
        '[supervisor]\n[[supervisor.children]]\nid = "stage"\nchildren = [\n'
        '  { id = "a", actor = "actors.examples:Scale" },\n'
        '  { id = "b", actor = "actors.examples:Scale", restart = "often" },\n]\n',
        [f"{FILE}: supervisor.children[0].children[1].restart: 'often' is not one of"],
    ),
    (
        "backoff value",
        "[supervisor]\n[supervisor.backoff]\ninitial = 0\n",
        [f"{FILE}: supervisor.backoff.initial: 0 must be > 0 seconds"],
    ),
    (
        "backoff unknown key",
        "[supervisor]\n[supervisor.backoff]\nmin = 1\n",
        [
            f"{FILE}: supervisor.backoff.min: unknown key; "
            "expected one of factor, initial, jitter, max, reset_after"
        ],
    ),
    (
        "backoff wrong type",
        '[supervisor]\n[supervisor.backoff]\nfactor = "2"\n',
        [f"{FILE}: supervisor.backoff.factor: '2' is not a number"],
    ),
    (
        "simple_one_for_one template count",
        '[supervisor]\nstrategy = "simple_one_for_one"\n' + SUM + SCALE,
        [f"{FILE}: supervisor.children: simple_one_for_one needs exactly one child", "got 2"],
    ),
    (
        "children not an array",
        '[supervisor]\nchildren = "sum"\n',
        [f"{FILE}: supervisor.children: 'sum' is a string, expected an array of tables"],
    ),
    (
        "fabric url wrong type",
        "[fabric]\nurl = 4222\n[supervisor]\n",
        [f"{FILE}: fabric.url: 4222 is an integer, expected a string"],
    ),
    (
        "fabric unknown key",
        '[fabric]\nurls = "nats://x"\n[supervisor]\n',
        [f"{FILE}: fabric.urls: unknown key (did you mean 'url'?)"],
    ),
    (
        "root name",
        '[supervisor]\nname = "my tree"\n',
        [f"{FILE}: supervisor.name: 'my tree' is not a child id"],
    ),
    (
        "root process key",
        "[supervisor]\nprocess = true\n",
        [f"{FILE}: supervisor.process: unknown key"],
    ),
    (
        "stream key on a supervisor child",
        '[supervisor]\n[[supervisor.children]]\nid = "s"\nchildren = []\nqos = {}\n',
        [f"{FILE}: supervisor.children[0].qos: a stream's QoS is not set on a child"],
    ),
    (
        "period not positive",
        "[supervisor]\nperiod = 0\n",
        [f"{FILE}: supervisor.period: 0 is not a finite number of seconds > 0"],
    ),
    (
        "period infinite",
        "[supervisor]\nperiod = inf\n",
        [f"{FILE}: supervisor.period: inf is not a finite number of seconds > 0"],
    ),
    (
        "nested period not a number",
        '[supervisor]\n[[supervisor.children]]\nid = "s"\nchildren = []\nperiod = nan\n',
        [f"{FILE}: supervisor.children[0].period: nan is not a finite number of seconds > 0"],
    ),
    (
        "nested duplicate ids",
        '[supervisor]\n[[supervisor.children]]\nid = "stage"\nchildren = [\n'
        '  { id = "a", actor = "actors.examples:Scale" },\n'
        '  { id = "a", actor = "actors.examples:Scale" },\n]\n',
        [f"{FILE}: supervisor.children[0].children[1].id: duplicate id 'a' (also children[0])"],
    ),
    (
        "nested simple_one_for_one template count",
        '[supervisor]\n[[supervisor.children]]\nid = "pool"\nstrategy = "simple_one_for_one"\n',
        [f"{FILE}: supervisor.children[0].children: simple_one_for_one needs exactly one"],
    ),
]


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_malformed_file_is_refused_naming_file_field_and_fault(
    text: str, fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(text))
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message


def test_missing_file_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^nowhere\.toml: cannot read the config file"):
        load_config("nowhere.toml")


def test_check_command_reports_the_error_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", write('[supervisor]\nstrategy = "one_for_some"\n')]) == 2
    assert f"{FILE}: supervisor.strategy: 'one_for_some'" in capsys.readouterr().err


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_shipped_example_passes_check(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(example)]) == 0
    assert capsys.readouterr().out.startswith(f"{example}: ok: supervisor 'root'")


def test_examples_are_shipped() -> None:
    assert {p.name for p in EXAMPLES} >= {"running_sum.toml", "pipeline.toml"}


def test_an_event_input_in_a_file_is_a_pattern_of_the_events_stream() -> None:
    text = "[supervisor]\n" + SUM + 'inputs = ["numbers", "diaspora.events.actor.*.lag"]\n'
    start = load_config(write(text)).spec.children[0].start
    assert getattr(start, "inputs", None) == ("numbers", "diaspora.events.actor.*.lag")
