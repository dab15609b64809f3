"""Scenario files: a supervision tree, keyed traffic and a timed fault schedule, in TOML.

:func:`load_scenario` reads and validates one file into a :class:`Scenario`;
every error is a :class:`~diaspora.errors.ConfigError` naming the file and the
field (``sims/scenarios/x.toml: faults[2].kind: 'nap' is not one of ...``).
Each fault is checked by :class:`~diaspora.testing.FaultSpec` itself, its
target against the tree's actors and process nodes. The format is described
in ``sims/README.md``.

>>> root = Path(__file__).resolve().parent.parent  # the checkout: supervisors/, actors/
>>> scenario = parse_scenario('''
... description = "the transform killed once"
... tree = "supervisors/reliability.toml"
... [traffic]
... input = "reliability.requests"
... output = "reliability.out"
... model = "actors.pipeline:expected"
... rate = 100
... messages = 200
... [[faults]]
... at = 1.0
... kind = "kill_process"
... target = "root.transform"
... ''', source="demo.toml", base=root)
>>> scenario.name, scenario.traffic.duration, [f.fault.describe() for f in scenario.faults]
('demo', 2.0, ['kill_process root.transform'])
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final

from diaspora._importpath import resolve
from diaspora._tomlfile import TomlReader, kind_of, load_toml
from diaspora.errors import ConfigError
from diaspora.fabric import check_subject
from diaspora.supervision import SupervisorSpec
from diaspora.testing import FaultKind, FaultSpec, InjectionError
from diaspora.workflow import ActorStart, ProcessStart, TreeConfig, load_config

__all__ = [
    "LAYERS",
    "Model",
    "RandomFaults",
    "Scenario",
    "TimedFault",
    "Traffic",
    "TreeTargets",
    "Values",
    "load_scenario",
    "parse_scenario",
]

#: A model: the outputs a key must have, one per input, given that key's input values in order.
Model = Callable[[str, list[Any]], Sequence[Any]]

#: The fault layers, as :attr:`FaultKind.layer` names them.
LAYERS: Final = ("actor", "process", "server", "link")

_TOP_KEYS: Final = frozenset(
    {"name", "description", "tree", "link", "seed", "settle_timeout", "traffic", "faults", "random"}
)
_TRAFFIC_KEYS: Final = frozenset(
    {"input", "output", "model", "keys", "rate", "messages", "duration", "values", "value_range"}
)
_FAULT_KEYS: Final = frozenset({"at", "kind", "target", "seconds", "duration", "rate", "jitter"})
_RANDOM_KEYS: Final = frozenset({"count", "layers", "window", "actors", "processes"})
_NAME: Final = re.compile(r"^[A-Za-z0-9_-]+$")


class Values(Enum):
    """How input values are made: ``random`` integers (seeded) or the ``index`` itself."""

    RANDOM = "random"
    INDEX = "index"


@dataclass(frozen=True, slots=True)
class Traffic:
    """Keyed inputs ``{"key", "i", "value"}`` published at ``rate`` messages/s, round-robin over
    ``keys`` keys, and the model their outputs are checked against."""

    input: str
    output: str
    model_path: str
    model: Model
    rate: float
    messages: int
    keys: int = 4
    values: Values = Values.RANDOM
    value_range: tuple[int, int] = (-1000, 1000)

    @property
    def duration(self) -> float:
        """Seconds the traffic lasts (``messages / rate``)."""
        return self.messages / self.rate


@dataclass(frozen=True, slots=True)
class TimedFault:
    """A fault to inject ``at`` seconds after the traffic starts; ``origin`` says where it came
    from (``faults[2]`` in the file, or ``random[0]`` drawn with the seed)."""

    at: float
    fault: FaultSpec
    origin: str

    def as_dict(self) -> dict[str, Any]:
        return {"planned_at": self.at, "origin": self.origin, **self.fault.as_dict()}


@dataclass(frozen=True, slots=True)
class RandomFaults:
    """``count`` extra faults drawn with the run's seed from ``layers``, at times in ``window``
    (``None``: the middle of the traffic), on the given actors and process-node targets."""

    count: int
    layers: tuple[str, ...]
    window: tuple[float, float] | None
    actors: tuple[str, ...]
    processes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TreeTargets:
    """What faults may hit in a tree: every actor id, and the process nodes with the actors
    that run inside each (a process fault's target is either)."""

    actors: tuple[str, ...]
    nodes: Mapping[str, tuple[str, ...]]

    @property
    def in_processes(self) -> tuple[str, ...]:
        """Actor ids whose process is not this one (may be frozen or killed)."""
        return tuple(actor for inside in self.nodes.values() for actor in inside)

    @classmethod
    def of(cls, config: TreeConfig) -> TreeTargets:
        actors: list[str] = []
        nodes: dict[str, list[str]] = {}

        def walk(spec: SupervisorSpec, path: str, node: str | None) -> None:
            for child in spec.children:
                child_path = f"{path}.{child.id}"
                start: object = child.start
                inside = node
                if isinstance(start, ProcessStart):
                    inside = child_path
                    nodes[inside] = []
                    start = start.target
                if isinstance(start, SupervisorSpec):
                    walk(start, child_path, inside)
                elif isinstance(start, ActorStart):
                    actors.append(child_path)
                    if inside is not None:
                        nodes[inside].append(child_path)

        walk(config.spec, config.name, None)
        return cls(tuple(actors), {node: tuple(inside) for node, inside in nodes.items()})


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario file (see the module docstring and ``sims/README.md``)."""

    source: str
    name: str
    description: str
    tree_path: Path
    tree: TreeConfig
    traffic: Traffic
    link: bool = False
    seed: int = 0
    settle_timeout: float = 60.0
    faults: tuple[TimedFault, ...] = ()
    random: RandomFaults | None = None
    targets: TreeTargets = field(default_factory=lambda: TreeTargets((), {}))


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and validate a scenario file; errors name it as given."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the scenario file: {exc}") from exc
    return parse_scenario(text, source=source, base=Path(source).parent)


def parse_scenario(
    text: str, *, source: str = "<scenario>", base: str | os.PathLike[str] = "."
) -> Scenario:
    """Validate scenario TOML ``text``; ``tree`` is relative to ``base`` (the file's folder)."""
    return _Parser(source, Path(base)).document(load_toml(text, source))


class _Parser(TomlReader):
    """Walks one scenario document; every error names ``source`` and the field path."""

    non_empty_strings = True

    def __init__(self, source: str, base: Path) -> None:
        super().__init__(source)
        self.base = base

    # -- structure -------------------------------------------------------------------------

    def document(self, document: dict[str, Any]) -> Scenario:
        self.keys(document, "", _TOP_KEYS)
        description = self.string(
            self.required(document, "description", "scenario", "one line: what it breaks"),
            "description",
        )
        name = self.string(document.get("name", Path(self.source).stem), "name")
        if not _NAME.match(name):
            raise self.fail(
                "name",
                f"{name!r} is not a scenario name: use letters, digits, '_' or '-' (it names "
                "the report file); set name = ... when the file name has other characters",
            )
        link = self.boolean(document.get("link", False), "link")
        seed = self.integer(document.get("seed", 0), "seed", minimum=0)
        settle = self.number(document.get("settle_timeout", 60.0), "settle_timeout", positive=True)
        tree_path, tree = self.tree(
            self.required(document, "tree", "scenario", "the supervision tree's TOML file")
        )
        targets = TreeTargets.of(tree)
        traffic = self.traffic(self.required(document, "traffic", "scenario", "a [traffic] table"))
        faults = self.faults(document.get("faults", []), targets, link)
        random = self.random(document["random"], targets, link) if "random" in document else None
        return Scenario(
            source=self.source,
            name=name,
            description=description.strip(),
            tree_path=tree_path,
            tree=tree,
            traffic=traffic,
            link=link,
            seed=seed,
            settle_timeout=settle,
            faults=faults,
            random=random,
            targets=targets,
        )

    def tree(self, value: object) -> tuple[Path, TreeConfig]:
        relative = self.string(value, "tree")
        path = (
            (self.base / relative).resolve() if not Path(relative).is_absolute() else Path(relative)
        )
        if not path.is_file():
            raise self.fail(
                "tree",
                f"{relative!r}: no such file ({path}); the path is relative "
                "to the scenario file's folder",
            )
        try:
            return path, load_config(path)
        except ConfigError as exc:
            raise self.fail("tree", str(exc)) from exc

    def traffic(self, value: object) -> Traffic:
        table = self.table(value, "traffic")
        self.keys(table, "traffic", _TRAFFIC_KEYS)
        where = "traffic"
        subject_in = check_subject(
            self.required(table, "input", where, "the subject inputs are published to"),
            where=f"{self.source}: traffic.input",
        )
        subject_out = check_subject(
            self.required(table, "output", where, "the subject of the workflow's outputs"),
            where=f"{self.source}: traffic.output",
        )
        model_path = self.string(
            self.required(table, "model", where, "module:function, the outputs' model"),
            "traffic.model",
        )
        model = resolve(model_path, where=f"{self.source}: traffic.model")
        if not callable(model):
            raise self.fail("traffic.model", f"{model_path!r} is not a function (key, values)")
        rate = self.number(
            self.required(table, "rate", where, "messages per second"),
            "traffic.rate",
            positive=True,
        )
        if ("messages" in table) == ("duration" in table):
            raise self.fail(
                where,
                "give exactly one of 'messages' (how many) or 'duration' (seconds at the rate)",
            )
        if "messages" in table:
            messages = self.integer(table["messages"], "traffic.messages", minimum=1)
        else:
            duration = self.number(table["duration"], "traffic.duration", positive=True)
            messages = max(1, round(duration * rate))
        keys = self.integer(table.get("keys", 4), "traffic.keys", minimum=1)
        values = Values.RANDOM
        if "values" in table:
            raw = table["values"]
            choices = [v.value for v in Values]
            if raw not in choices:
                raise self.fail("traffic.values", f"{raw!r} is not one of {', '.join(choices)}")
            values = Values(raw)
        low, high = -1000, 1000
        if "value_range" in table:
            low, high = self.pair(table["value_range"], "traffic.value_range", "low, high")
            for bound in (low, high):
                if isinstance(bound, bool) or not isinstance(bound, int):
                    raise self.fail(
                        "traffic.value_range", f"{bound!r} is {kind_of(bound)}, expected an integer"
                    )
            if low > high:
                raise self.fail("traffic.value_range", f"[{low}, {high}]: low is above high")
        return Traffic(
            input=subject_in,
            output=subject_out,
            model_path=model_path,
            model=model,
            rate=rate,
            messages=messages,
            keys=keys,
            values=values,
            value_range=(low, high),
        )

    def faults(self, value: object, targets: TreeTargets, link: bool) -> tuple[TimedFault, ...]:
        if not isinstance(value, list):
            raise self.fail("faults", f"{value!r} is {kind_of(value)}, expected [[faults]] tables")
        out = [self.fault(item, f"faults[{n}]", targets, link) for n, item in enumerate(value)]
        out.sort(key=lambda timed: timed.at)
        self.server_overlaps(out)
        return tuple(out)

    def fault(self, value: object, where: str, targets: TreeTargets, link: bool) -> TimedFault:
        table = self.table(value, where)
        self.keys(table, where, _FAULT_KEYS)
        at = self.number(
            self.required(table, "at", where, "seconds after traffic starts"), f"{where}.at"
        )
        raw = self.required(table, "kind", where, "which fault")
        kinds = [kind.value for kind in FaultKind]
        if raw not in kinds:
            close = difflib.get_close_matches(str(raw), kinds, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise self.fail(f"{where}.kind", f"{raw!r} is not one of {', '.join(kinds)}{hint}")
        kind = FaultKind(raw)
        options = {
            key: table[key]
            for key in ("target", "seconds", "duration", "rate", "jitter")
            if key in table
        }
        try:
            fault = FaultSpec(kind, **options)
        except InjectionError as exc:
            raise self.fail(where, str(exc)) from None
        except TypeError as exc:
            raise self.fail(where, f"fault {kind.value}: {exc}") from None
        self.check_target(fault, f"{where}.target", targets)
        if kind.layer == "link" and not link:
            raise self.fail(
                f"{where}.kind",
                f"{kind.value!r} is a link fault, but the scenario "
                "has no link: set link = true (a LinkProxy between tree and server)",
            )
        return TimedFault(at, fault, where)

    def check_target(self, fault: FaultSpec, where: str, targets: TreeTargets) -> None:
        target = fault.target
        if target is None:
            return
        kind = fault.kind
        if kind.layer == "actor":
            known = targets.actors
            what = "an actor id of the tree"
        elif kind is FaultKind.FREEZE:
            known = targets.in_processes
            what = "an actor id running in a process node (process = true)"
        else:
            known = (*targets.nodes, *targets.in_processes)
            what = "a process node path, or an actor id running in one"
        if target not in known:
            listed = ", ".join(dict.fromkeys(known)) or "none in this tree"
            raise self.fail(where, f"{target!r} is not {what}; known: {listed}")

    def server_overlaps(self, faults: Sequence[TimedFault]) -> None:
        """A kill or pause of the server while an earlier one is still in force cannot be
        carried out: say so now rather than in the middle of a run."""
        busy_until, busy_by = -1.0, ""
        for timed in faults:
            kind = timed.fault.kind
            if kind in (FaultKind.RESTART_SERVER, FaultKind.RESUME_SERVER):
                busy_until = min(busy_until, timed.at)
            elif kind in (FaultKind.KILL_SERVER, FaultKind.PAUSE_SERVER):
                if timed.at < busy_until:
                    until = "a restart" if math.isinf(busy_until) else f"{busy_until:g}s"
                    raise self.fail(
                        f"{timed.origin}.at",
                        f"{kind.value} at {timed.at:g}s, but the server is still down or paused "
                        f"by {busy_by} until {until}",
                    )
                duration = timed.fault.duration
                busy_until = math.inf if duration is None else timed.at + duration
                busy_by = timed.origin

    def random(self, value: object, targets: TreeTargets, link: bool) -> RandomFaults:
        where = "random"
        table = self.table(value, where)
        self.keys(table, where, _RANDOM_KEYS)
        count = self.integer(
            self.required(table, "count", where, "how many faults to draw"),
            "random.count",
            minimum=0,
        )
        layers = self.strings(table.get("layers", list(LAYERS)), "random.layers")
        for n, layer in enumerate(layers):
            if layer not in LAYERS:
                raise self.fail(
                    f"random.layers[{n}]", f"{layer!r} is not one of {', '.join(LAYERS)}"
                )
        if not layers:
            raise self.fail("random.layers", "name at least one layer")
        window = None
        if "window" in table:
            low, high = self.pair(table["window"], "random.window", "from, to (seconds)")
            start = self.number(low, "random.window[0]")
            end = self.number(high, "random.window[1]")
            if end <= start:
                raise self.fail(
                    "random.window", f"[{start:g}, {end:g}]: the end is not after the start"
                )
            window = (start, end)
        actors = self.strings(table.get("actors", list(targets.actors)), "random.actors")
        processes = self.strings(
            table.get("processes", list(targets.in_processes)), "random.processes"
        )
        for n, actor in enumerate(actors):
            self.check_target(FaultSpec(FaultKind.CRASH, actor), f"random.actors[{n}]", targets)
        for n, target in enumerate(processes):
            self.check_target(
                FaultSpec(FaultKind.FREEZE, target, seconds=1.0), f"random.processes[{n}]", targets
            )
        needs = {"actor": actors, "process": processes}
        for layer, names in needs.items():
            if layer in layers and not names:
                raise self.fail(
                    "random.layers",
                    f"layer {layer!r} has nothing to hit in this tree "
                    f"(no {'actors' if layer == 'actor' else 'process nodes'})",
                )
        if "link" in layers and not link:
            raise self.fail(
                "random.layers",
                "layer 'link' needs link = true (a LinkProxy between tree and server)",
            )
        return RandomFaults(count, layers, window, actors, processes)
