"""The layer contract: a layer imports only the layers below it (ARCHITECTURE.md).

Every import in ``diaspora/`` counts: top level, inside functions, and under
``if TYPE_CHECKING:`` (a type is a dependency too). A failure names the
importing module, the line and the layer it reached up to.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "diaspora"

#: Layer of each top-level module or package of ``diaspora``.
LAYER_OF = {
    "errors": "base",
    "log": "base",
    "codec": "base",
    "events": "base",
    "clock": "base",
    "backoff": "base",
    "exitcode": "base",
    "_tomlfile": "base",
    "_importpath": "base",
    "_lazy": "base",
    "fabric": "fabric",
    "storage": "storage",
    "supervision": "supervision",
    "message": "pipeline",
    "stage": "pipeline",
    "streams": "streams",
    "actor": "actor",
    "views": "views",
    "compute": "compute",
    "triggers": "triggers",
    "predict": "predict",
    "workflow": "workflow",
    "testing": "testing",
    "observe": "observe",
    "cli": "cli",
    "_storagecli": "cli",  # issue 16: `diaspora storage`
    "__main__": "cli",
    "__init__": "root",
}

_FRAMEWORK = {
    "base", "fabric", "pipeline", "streams", "actor", "views", "supervision", "compute",
    "triggers", "predict", "workflow", "storage",
}  # fmt: skip

BELOW = {
    "base": set(),
    "fabric": {"base"},
    # resilient storage: chunks over the sites' JetStream domains, through fabric helpers
    "storage": {"base", "fabric"},
    "supervision": {"base"},  # the OTP kernel knows nothing of NATS or actors
    "pipeline": {"base", "fabric"},
    "streams": {"base", "fabric", "pipeline"},
    "actor": {"base", "fabric", "pipeline", "streams", "storage"},
    # views are actors over other streams: joins by reference (no supervision of their own)
    "views": {"base", "fabric", "pipeline", "streams", "actor", "storage"},
    "compute": _FRAMEWORK - {"compute", "triggers", "predict", "workflow"},
    # triggers are actors with supervision's control subject; workflow files declare them
    "triggers": _FRAMEWORK - {"compute", "triggers", "predict", "workflow"},
    # monitors: supervised actors over events; their actions reach pools and migration
    "predict": _FRAMEWORK - {"triggers", "predict", "workflow"},
    "workflow": _FRAMEWORK - {"workflow"},
    "testing": _FRAMEWORK,
    # read-only views of a running workflow: events, top, the dashboard
    "observe": _FRAMEWORK,
    "cli": _FRAMEWORK | {"observe"},
    "root": set(LAYER_OF.values()),
}


def _layer(module: str) -> str | None:
    """The layer of a dotted module name under ``diaspora`` (``None`` outside it)."""
    parts = module.split(".")
    if parts[0] != "diaspora":
        return None
    if len(parts) == 1:
        return "root"
    return LAYER_OF.get(parts[1], f"unknown:{parts[1]}")


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module) of every import in the source of ``module``, relative imports resolved."""
    package = module
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            # "from diaspora import codec" imports the module diaspora.codec
            if base == "diaspora":
                found += [(node.lineno, f"diaspora.{alias.name}") for alias in node.names]
    return found


def violations(edges: dict[str, list[tuple[int, str]]]) -> list[str]:
    """Every import that reaches a layer the importer may not use."""
    bad = []
    for importer, imported in sorted(edges.items()):
        own = _layer(importer)
        assert own is not None
        for line, target in imported:
            layer = _layer(target)
            if layer is None or layer == own or target == "diaspora":
                continue
            if layer.startswith("unknown:") or own.startswith("unknown:"):
                bad.append(f"{importer}:{line}: {target} is in no declared layer")
            elif layer not in BELOW[own]:
                bad.append(f"{importer}:{line}: layer {own!r} imports {target} ({layer!r})")
    return bad


def _edges() -> dict[str, list[tuple[int, str]]]:
    edges = {}
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(("diaspora", *path.relative_to(ROOT).with_suffix("").parts))
        edges[module] = _imports(path, module)
    return edges


def test_every_layer_imports_only_the_layers_below_it() -> None:
    assert violations(_edges()) == []


def test_every_module_is_in_a_declared_layer() -> None:
    undeclared = sorted(
        module for module in _edges() if (_layer(module) or "").startswith("unknown:")
    )
    assert undeclared == [], "add new top-level modules to LAYER_OF (and ARCHITECTURE.md)"


@pytest.mark.parametrize(
    ("importer", "target"),
    [
        ("diaspora.fabric._consumer", "diaspora.actor"),  # fabric reaching up to the actor
        ("diaspora.supervision._supervisor", "diaspora.fabric"),  # the kernel knowing NATS
        ("diaspora.streams._replay", "diaspora.actor._runtime"),  # streams knowing the driver
        ("diaspora.actor._runtime", "diaspora.workflow"),
    ],
)
def test_an_upward_import_is_caught(importer: str, target: str) -> None:
    assert violations({importer: [(1, target)]}) != []


def test_imports_are_read_everywhere_in_a_module(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from diaspora.actor import Actor\n"
        "def late():\n    import diaspora.workflow\n"
        "from diaspora import codec\n"
    )
    imports = _imports(source, "diaspora.fabric.mod")
    assert {"diaspora.actor", "diaspora.workflow", "diaspora.codec"} <= {m for _, m in imports}
    assert len(violations({"diaspora.fabric.mod": imports})) == 2  # actor and workflow


#: Modules allowed past 500 lines: catalogues of small units, each with why.
CATALOGUES = {
    "diaspora/events.py": "one small frozen dataclass per event kind",
}


def test_modules_stay_within_their_size_budget() -> None:
    """One concept per module: over 500 lines only for a catalogue of small units."""
    over = {
        path.relative_to(ROOT.parent).as_posix(): n
        for path in ROOT.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert {p: n for p, n in over.items() if p not in CATALOGUES} == {}


def test_the_actor_runtime_stays_a_small_driver() -> None:
    """New capabilities are stages, not methods of the driver (ARCHITECTURE.md)."""
    tree = ast.parse((ROOT / "actor" / "_runtime.py").read_text())
    (driver,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ActorRuntime"]
    assert driver.end_lineno is not None
    assert driver.end_lineno - driver.lineno + 1 < 300
