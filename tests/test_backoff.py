"""The one Backoff type: its formula, its bounds, its validation, and its place below the layers."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

import diaspora
from diaspora.backoff import Backoff
from diaspora.errors import ConfigError
from diaspora.supervision import Backoff as SupervisionBackoff
from diaspora.supervision._spec import Backoff as SpecBackoff


def test_supervision_re_exports_the_base_backoff() -> None:
    assert SupervisionBackoff is Backoff
    assert SpecBackoff is Backoff


def test_delay_grows_by_factor_up_to_max() -> None:
    backoff = Backoff(initial=0.05, max=1.0, factor=2.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0]


def test_delay_of_a_huge_attempt_is_the_cap_not_an_overflow() -> None:
    backoff = Backoff(initial=0.05, max=2.0, factor=2.0, jitter=0.0)
    assert backoff.delay(10**6) == 2.0
    assert Backoff(initial=1.0, max=1.0, factor=1.0, jitter=0.0).delay(10**6) == 1.0


def test_jitter_stays_within_its_band() -> None:
    backoff = Backoff(initial=1.0, max=1.0, jitter=1 / 3)
    rng = random.Random(7)
    delays = [backoff.delay(1, rng) for _ in range(2000)]
    assert min(delays) >= 2 / 3
    assert max(delays) <= 4 / 3
    assert max(delays) - min(delays) > 0.6  # it does spread


def test_seeded_rng_makes_delays_reproducible() -> None:
    backoff = Backoff(initial=0.1, max=5.0, jitter=0.5)
    first = [backoff.delay(n, random.Random(3)) for n in range(1, 10)]
    assert first == [backoff.delay(n, random.Random(3)) for n in range(1, 10)]


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"initial": 0}, "backoff.initial"),
        ({"initial": 2.0, "max": 1.0}, "backoff.max"),
        ({"factor": 0.5}, "backoff.factor"),
        ({"jitter": 1.0}, "backoff.jitter"),
        ({"reset_after": -1}, "backoff.reset_after"),
        ({"initial": "fast"}, "backoff.initial"),
    ],
)
def test_invalid_fields_are_named(fields: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError, match=where):
        Backoff(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("module", ["backoff", "clock"])
def test_base_modules_import_no_other_layer(module: str) -> None:
    source = (Path(diaspora.__file__).parent / f"{module}.py").read_text()
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    project = {name for name in imported if name.startswith("diaspora")}
    assert project <= {"diaspora.errors"}, f"diaspora/{module}.py imports {sorted(project)}"
