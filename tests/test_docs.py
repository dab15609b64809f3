"""The docs run: every docstring example in diaspora and every python block of the README,
ARCHITECTURE.md and docs/*.md; the README's two commands are exactly what CI runs, and it
links every topic page."""

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

#: Every page whose python blocks the suite runs, README first.
PAGES = [
    ROOT / "README.md",
    ROOT / "ARCHITECTURE.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
#: Pages (relative to the repository) whose python blocks are not run, each with the reason.
NOT_RUN: dict[str, str] = {}
#: Pages linked before they exist, each with where it is being written.
PENDING: dict[str, str] = {}

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


def _relative(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def _blocks() -> list[tuple[str, int, str]]:
    return [
        (_relative(page), index, code)
        for page in PAGES
        if _relative(page) not in NOT_RUN
        for index, code in enumerate(python_blocks(page.read_text()))
    ]


BLOCKS = _blocks()


@pytest.mark.parametrize(
    ("page", "index", "code"), BLOCKS, ids=[f"{page}[{index}]" for page, index, _ in BLOCKS]
)
def test_python_blocks_of_the_docs_run(
    page: str, index: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{page} python block {index}", "exec"), {"__name__": "__docs__"})


def test_every_python_block_is_collected_and_every_exception_says_why() -> None:
    assert len(PAGES) > 1, "no docs/*.md pages found"
    pages = {_relative(page) for page in PAGES}
    for page, reason in NOT_RUN.items():
        assert page in pages, f"NOT_RUN names {page}, which is not a page"
        assert reason.strip(), f"NOT_RUN gives no reason for {page}"
    for page in PAGES:
        text = page.read_text()
        found = len(python_blocks(text))
        assert text.count("```python") == found, f"{_relative(page)}: a python block not collected"


def test_python_blocks_are_found_as_written() -> None:
    text = "x\n```python\nprint(1)\n```\n\n```sh\nls\n```\n```python\nimport os\n```\n"
    assert python_blocks(text) == ["print(1)\n", "import os\n"]


def test_readme_opens_with_the_two_commands_ci_runs() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, flags=re.S)
    assert first_block is not None
    assert README.index(first_block.group(0)) < README.index("\n## ")
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci, f"README command not in .ci/run: {command}"


def test_readme_links_every_topic_page() -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"]({_relative(page)})" in README, f"README's Documentation list lacks {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_local_links_lead_to_files(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        path = (page.parent / target).resolve()
        if path.is_relative_to(ROOT) and _relative(path) in PENDING:
            continue
        assert path.exists(), f"{_relative(page)} links to {target}, which does not exist"


def test_testing_page_shows_the_fixture_example_test_verbatim() -> None:
    source = (ROOT / "tests" / "testing" / "test_testing_page_example.py").read_text()
    body = source.split('"""', 2)[2].lstrip("\n")  # the file after its docstring
    page = (ROOT / "docs" / "testing.md").read_text()
    assert f"```py\n{body}```" in page, "docs/testing.md's pytest example differs from the test"


#: "`root.sum` → `diaspora.dlq.root_sum`": an actor id and the dead-letter subject a page gives it.
_DLQ_EXAMPLE = re.compile(r"`([^`\s]+)`\s+→\s+`(diaspora\.dlq\.[^`]*)`")


def test_dead_letter_subjects_in_the_docs_are_what_is_published() -> None:
    from diaspora.fabric._naming import dlq_subject

    found: dict[str, list[tuple[str, str]]] = {}
    for page in PAGES:
        text = page.read_text()
        assert "diaspora.dlq.<actor>" not in text, (
            f"{_relative(page)}: diaspora.dlq.<actor> is not what is published: "
            "the actor id becomes one token (root.sum → diaspora.dlq.root_sum)"
        )
        found[_relative(page)] = _DLQ_EXAMPLE.findall(text)
    for page in ("README.md", "docs/actors.md"):
        assert found[page], f"{page} gives no example of the dead-letter subject rule"
    for page, examples in found.items():
        for actor, subject in examples:
            assert dlq_subject(actor) == subject, f"{page}: {actor} → {subject}"
    # the rule the pages state in words: '.', '*', '>' and whitespace become '_'
    assert dlq_subject("a.b*c>d e") == "diaspora.dlq.a_b_c_d_e"
