"""The trees the observe tests run, and what they wait on."""

from __future__ import annotations

import anyio

from diaspora.fabric import Fabric
from diaspora.observe import WorkflowModel

SLOW = """
[supervisor]
intensity = 20
period = 10.0

[[supervisor.children]]
id = "slow"
actor = "tests.observe.observed_actors:Slow"
"""

#: The same actor at 20 ms an input: a burst of 600 is a backlog of hundreds for seconds
#: however slowly a loaded machine publishes it (the pty test reads its lag off the screen).
SLOWER = SLOW.rstrip("\n") + "\nargs = { delay = 0.02 }\n"


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


async def burst(fabric: Fabric, n: int = 600, subject: str = "obs.in") -> None:
    """Publish ``n`` inputs at once, acknowledged: a backlog for ``Slow`` (5 ms each).

    Not one acknowledged publish after another, which a loaded event loop can make
    slower than the actor: the burst is in the stream before a restarted actor notes
    its backlog (its catch-up lag), however slow the machine.
    """
    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(fabric.publish, subject, {"i": i})
