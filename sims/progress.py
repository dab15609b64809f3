"""A run's progress while its traffic and faults go: samples for the report's plots, a log
line every second, and a bar on a terminal (nothing in a log).

Each second :func:`follow_progress` samples what was sent, acknowledged by
the server and stored as output, and the faults in force; the samples go
into the report (``extra.progress``), where :mod:`sims.plots` draws lag and
throughput from them.
"""

from __future__ import annotations

import contextlib
from typing import Any, Final, Protocol

import anyio

from diaspora.fabric import Fabric
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.log import FilteringBoundLogger
from diaspora.observe import Progress
from diaspora.testing import Injector

__all__ = ["ProgressRun", "follow_progress"]

_EVERY: Final = 1.0


class ProgressRun(Protocol):
    """What of a run the progress reads and writes."""

    log: FilteringBoundLogger
    sent: list[Any]
    samples: list[dict[str, Any]]

    @property
    def name(self) -> str: ...

    @property
    def output(self) -> str: ...

    @property
    def messages(self) -> int: ...


async def follow_progress(
    run: ProgressRun,
    fabric: Fabric,
    injector: Injector,
    publisher: OrderedPublisher,
    start: float,
) -> None:
    """Every second, until cancelled (and once more then): a sample, a ``progress`` log
    line, the bar moved on."""
    with Progress(f"sims {run.name}", total=run.messages) as bar:
        try:
            while True:
                await _sample(run, fabric, injector, publisher, start, bar)
                await anyio.sleep(_EVERY)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await _sample(run, fabric, injector, publisher, start, bar)  # the last one


async def _sample(
    run: ProgressRun,
    fabric: Fabric,
    injector: Injector,
    publisher: OrderedPublisher,
    start: float,
    bar: Progress,
) -> None:
    stored: int | None = None
    with contextlib.suppress(Exception), anyio.move_on_after(0.5):
        first, last = await fabric.stream_bounds(run.output)
        stored = last - first + 1 if last else 0
    active = [r.fault.describe() for r in injector.active()]
    sample = {
        "t_s": round(anyio.current_time() - start, 2),
        "sent": len(run.sent),
        "acked": publisher.acked,
        "outputs": stored,
        "active": active,
    }
    run.samples.append(sample)
    run.log.info("progress", **sample)
    bar.update(len(run.sent), note=f"{stored or 0} outputs  {' '.join(active)}")
