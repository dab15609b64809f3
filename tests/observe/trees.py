"""The trees the observe tests run, and what they wait on."""

from __future__ import annotations

from diaspora.observe import WorkflowModel

SLOW = """
[supervisor]
intensity = 20
period = 10.0

[[supervisor.children]]
id = "slow"
actor = "tests.observe.observed_actors:Slow"
"""


def restarted(model: WorkflowModel, actor: str = "root.slow") -> bool:
    """The actor runs again after a crash that the timeline closed with its recovery."""
    row = model.actors.rows.get(actor)
    crashes = [i for i in model.incidents.timeline if i.kind == "crash" and i.who == actor]
    return (
        row is not None
        and row.state == "running"
        and len(row.restarts) >= 1
        and any(i.end is not None for i in crashes)
    )
