"""The fabric is sealed: no module of diaspora outside diaspora/fabric/ speaks NATS itself.

Above the fabric, code uses :class:`~diaspora.fabric.Fabric`'s methods; it
never touches a nats-py client or JetStream context (``nc``, ``js``,
``_nc``), never imports ``nats``, and never spells a raw ``$JS.`` subject.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import diaspora

PACKAGE = Path(diaspora.__file__).resolve().parent
FABRIC = PACKAGE / "fabric"
#: Modules allowed to break the seal, each with the reason (none today).
KNOWN_EXCEPTIONS: set[str] = set()
FORBIDDEN_ATTRIBUTES = frozenset({"nc", "js", "_nc"})


def _modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if FABRIC not in path.parents
        and path.relative_to(PACKAGE).as_posix() not in KNOWN_EXCEPTIONS
    )


def _violations(source: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            found.append(f"line {line}: attribute .{node.attr}")
        elif isinstance(node, ast.Import):
            found += [
                f"line {line}: import {a.name}"
                for a in node.names
                if a.name == "nats" or a.name.startswith("nats.")
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "nats" or node.module.startswith("nats."):
                found.append(f"line {line}: from {node.module} import ...")
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and "$JS." in node.value
        ):
            found.append(f"line {line}: raw JetStream subject {node.value[:40]!r}")
    return found


def test_the_check_catches_each_kind_of_leak() -> None:
    leaky = (
        "import nats.errors\n"
        "from nats.js.api import StreamConfig\n"
        "async def f(fabric):\n"
        "    await fabric.nc.publish('$JS.API.INFO', b'')\n"
        "    await fabric.js.stream_info('x')\n"
        "    return fabric._nc\n"
    )
    kinds = sorted(v.split(": ", 1)[1].split(" ")[0] for v in _violations(leaky))
    assert kinds == ["attribute", "attribute", "attribute", "from", "import", "raw"]
    assert not _violations("async def f(fabric):\n    await fabric.publish_core('a', b'')\n")


def test_every_known_exception_still_exists() -> None:
    for module in KNOWN_EXCEPTIONS:
        assert (PACKAGE / module).is_file(), f"{module} is gone: drop it from KNOWN_EXCEPTIONS"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_module_outside_the_fabric_speaks_nats(path: Path) -> None:
    violations = _violations(path.read_text())
    assert not violations, (
        f"diaspora/{path.relative_to(PACKAGE).as_posix()} reaches past the fabric: "
        f"{violations}; add a typed Fabric method in diaspora/fabric/ and call that"
    )
