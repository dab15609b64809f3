"""Stopping a supervisor's children: one, a restart set in reverse start order, or all of them.

The children of a ``simple_one_for_one`` supervisor are stopped in parallel,
as OTP does (they are many, and independent: their order is not defined);
the others one after another, in reverse start order. Each child is stopped
by its own shutdown policy (see :meth:`_Launcher.stop`).
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio

from diaspora.supervision._children import _Children
from diaspora.supervision._launcher import _Launcher
from diaspora.supervision._records import _Child, _Incarnation

__all__: list[str] = []


def _take(child: _Child) -> _Incarnation | None:
    """``child``'s running incarnation, now no longer its current one."""
    incarnation, child.incarnation = child.incarnation, None
    return incarnation


async def stop_each(launcher: _Launcher, children: Iterable[_Child]) -> None:
    """Stop the running ones of ``children``, one after another, in the order given."""
    for child in children:
        incarnation = _take(child)
        if incarnation is not None:
            await launcher.stop(incarnation)


async def halt(children: _Children, launcher: _Launcher, child: _Child) -> None:
    """Make ``child`` not running and not restarting."""
    children.unpend(child)
    await stop_each(launcher, [child])


async def terminate_all(children: _Children, launcher: _Launcher) -> None:
    """Stop every child: in reverse start order, or all at once under ``simple_one_for_one``."""
    if not children.simple:
        for child in reversed(children):
            await halt(children, launcher, child)
        return
    running = []
    for child in children:
        children.unpend(child)
        incarnation = _take(child)
        if incarnation is not None:
            running.append(incarnation)
    async with anyio.create_task_group() as tg:
        for incarnation in running:
            tg.start_soon(launcher.stop, incarnation)
