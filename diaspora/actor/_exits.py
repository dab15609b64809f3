"""How a start of an actor ends: running a source's ``produce``, and the last event."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from diaspora.errors import ActorCrashed, FencedOut
from diaspora.events import Crashed, Fenced, Stopped

if TYPE_CHECKING:
    from diaspora.actor._actor import Actor
    from diaspora.actor._runtime import ActorRuntime

__all__ = ["report_exit", "run_source"]


async def run_source(actor: Actor, stop: anyio.Event) -> None:
    """Run a source's ``produce`` until it returns or a stop is requested."""
    with anyio.CancelScope() as scope:

        async def cancel_on_stop() -> None:
            await stop.wait()
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_on_stop)
            await actor.produce()
            tg.cancel_scope.cancel()


async def report_exit(runtime: ActorRuntime, error: Exception | None) -> None:
    """The last event of a start (stopped, fenced or crashed); re-raise a failure."""
    if error is None:
        await runtime.event(
            Stopped(
                name=runtime.id, positions=dict(runtime.positions), stats=runtime.stats.as_dict()
            )
        )
        return
    if isinstance(error, ActorCrashed):
        raise error
    if isinstance(error, FencedOut):
        await runtime.event(Fenced(name=runtime.id, reason=str(error)))
        raise error
    await runtime.event(Crashed(name=runtime.id, reason=repr(error)))
    raise ActorCrashed(runtime.id, error) from error
