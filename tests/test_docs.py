"""The docs run: every docstring example in diaspora, every python block in the README,
and the README's two commands are exactly what CI runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import diaspora

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(diaspora.__path__, "diaspora.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_blocks_run(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = _python_blocks()[index]
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})


def test_readme_opens_with_the_two_commands_ci_runs() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, flags=re.S)
    assert first_block is not None
    assert README.index(first_block.group(0)) < README.index("\n## ")
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci, f"README command not in .ci/run: {command}"


def test_readme_shows_the_fixture_example_test_verbatim() -> None:
    source = (ROOT / "tests" / "testing" / "test_readme_example.py").read_text()
    body = source.split('"""', 2)[2].lstrip("\n")  # the file after its docstring
    assert f"```py\n{body}```" in README, "README's pytest example differs from the test file"
