"""The README's recovery table is the one ``sims/recovery.json`` (``python -m sims recovery``
over real run reports) gives, and names every run it came from."""

from __future__ import annotations

import json
from pathlib import Path

from sims.report import RECOVERY, recovery_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_states_the_recovery_figures_of_the_runs() -> None:
    figures = json.loads(RECOVERY.read_text())
    readme = (ROOT / "README.md").read_text()
    assert recovery_table(figures["by_kind"]) in readme
    assert figures["by_kind"], "sims/recovery.json holds no recovery"
    for run in figures["runs"]:
        name, seed = run.split(" (seed ")
        assert f"`{name}`" in readme, f"README does not name the run {run}"
        assert seed.rstrip(")") in readme, f"README does not give the seed of {run}"
