"""The two-process rig of the migration tests: the ``counter`` actor on process nodes ``a``
and ``b``, who owns it, and whether the other's standby answers."""

from __future__ import annotations

from diaspora.actor import CheckpointSlot
from diaspora.compute._migrate import shadow_subject
from diaspora.errors import ControlError
from diaspora.fabric import Fabric
from diaspora.fabric._control import control_request
from diaspora.supervision import SupervisorSpec
from diaspora.workflow import process_child
from tests.compute.migrate_actors import WIDTH, CounterAt


def counter_nodes(fabric: Fabric, *, intensity: int, width: int = WIDTH) -> SupervisorSpec:
    """Two process nodes running ``counter``: ``a``, its home (it owns it first), and ``b``."""
    return SupervisorSpec(
        [
            process_child("a", CounterAt("a", home=True, width=width), fabric),
            process_child("b", CounterAt("b", width=width), fabric),
        ],
        intensity=intensity,
        period=10.0,
    )


async def owner(fabric: Fabric) -> str | None:
    """The worker whose placement ``counter``'s checkpoint names (``None``: no checkpoint yet)."""
    record = await CheckpointSlot.peek(fabric, "counter")
    return None if record is None else record.placement


async def standby_up(fabric: Fabric, worker: str) -> bool:
    """Whether ``counter``'s standby on ``worker`` answers a ping."""
    try:
        await control_request(
            fabric, shadow_subject("counter", worker), {"op": "ping"}, timeout=1.0, nobody=""
        )
    except ControlError:
        return False
    return True
