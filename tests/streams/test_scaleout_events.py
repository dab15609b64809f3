"""ScaleOutGroup reports each resize as a typed event, to the sink its owner gives it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from diaspora.compute._scaleout import ScaleOutGroup
from diaspora.events import MemorySink, ScaledIn, ScaledOut
from diaspora.supervision import ChildSpec, Supervisor, SupervisorSpec
from tests.streams.qos_actors import KeyedCounter

pytestmark = pytest.mark.anyio


class _Replicas:
    """Stands in for the group's simple_one_for_one supervisor: hands out replica handles."""

    def __init__(self) -> None:
        self.running: list[Any] = []

    async def start_child(self, partitions: list[int]) -> Any:
        self.running.append(partitions)
        return partitions

    async def terminate_child(self, handle: Any) -> None:
        self.running.remove(handle)


async def resize(group: ScaleOutGroup, replicas: _Replicas, *sizes: tuple[int, int]) -> None:
    for size, lag in sizes:
        await group._resize(replicas, size, lag)  # type: ignore[arg-type]


async def test_each_resize_is_an_event_on_the_given_sink() -> None:
    sink = MemorySink()
    group = ScaleOutGroup(KeyedCounter, None, id="g", partitions=4, events=sink)  # type: ignore[arg-type]
    replicas = _Replicas()
    await resize(group, replicas, (1, 0), (4, 900), (2, 10))
    assert replicas.running == [[0, 2], [1, 3]]
    assert sink.events == [  # the first sizing is a start, not a resize
        ScaledOut(name="g", replicas=4, before=1, lag=900),
        ScaledIn(name="g", replicas=2, before=4, lag=10),
    ]
    assert sink.events[0].subject_name == "diaspora.events.scaleout.g.scale_out"


async def test_a_group_started_by_a_supervisor_reports_to_the_supervisors_sink() -> None:
    sink = MemorySink()
    made: list[ScaleOutGroup] = []

    class Owner:
        """A child whose start builds a group, as a start function would."""

        def __init__(self) -> None:
            made.append(ScaleOutGroup(KeyedCounter, None, id="g", partitions=2))  # type: ignore[arg-type]
            self._stop = anyio.Event()

        async def run(self, *, task_status: TaskStatus[None]) -> None:
            task_status.started()
            await self._stop.wait()

        def request_stop(self) -> None:
            self._stop.set()

    sup = Supervisor(SupervisorSpec([ChildSpec("owner", Owner)]), name="root", on_event=sink)
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await resize(made[0], _Replicas(), (1, 0), (2, 500))
        sup.request_stop()
    assert sink.of(ScaledOut) == [ScaledOut(name="g", replicas=2, before=1, lag=500)]


def test_a_group_outside_a_supervisor_reports_to_its_fabric() -> None:
    fabric: Any = object()
    assert ScaleOutGroup(KeyedCounter, fabric, id="g").events is fabric
