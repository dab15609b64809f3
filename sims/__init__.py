"""sims: fault scenarios run from files — a tree, keyed traffic and a timed fault schedule —
against a real nats-server, checked against a model, with a JSON report of each run.

    python -m sims list
    python -m sims check sims/scenarios/edge_outage.toml
    python -m sims run sims/scenarios/edge_outage.toml --seed 3

From Python::

    report = await run_scenario(load_scenario("sims/scenarios/edge_outage.toml"))
    assert report.ok

The faults are :mod:`diaspora.testing`'s injectors; see ``sims/README.md``.
"""

from sims.runner import run_scenario
from sims.scenario import Scenario, load_scenario, parse_scenario
from sims.schedule import build_schedule

__all__ = ["Scenario", "build_schedule", "load_scenario", "parse_scenario", "run_scenario"]
