"""run_until: the root of a process runs beside what stops it; its own error comes out
as it is (not in an ExceptionGroup), a stop lets it return, a kill cancels it."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from anyio.abc import TaskStatus

from diaspora.supervision._runnable import run_until

pytestmark = pytest.mark.anyio


class Worker:
    def __init__(self, *, fail: bool = False, stubborn: bool = False) -> None:
        self.fail, self.stubborn = fail, stubborn
        self.stopping = anyio.Event()
        self.started = False

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.started = True
        task_status.started()
        if self.fail:
            raise KeyError("boom")
        await self.stopping.wait()
        if self.stubborn:
            await anyio.sleep_forever()

    def request_stop(self) -> None:
        self.stopping.set()


async def never(stop: Callable[[], None], kill: Callable[[], None]) -> None:
    await anyio.sleep_forever()


async def stop_then_kill(stop: Callable[[], None], kill: Callable[[], None]) -> None:
    stop()
    await anyio.sleep(0.05)
    kill()


async def test_the_runnables_error_is_raised_unwrapped() -> None:
    with pytest.raises(KeyError, match="boom"):
        await run_until(Worker(fail=True), never)


async def test_a_stop_lets_it_return_and_the_stopper_is_cancelled() -> None:
    worker = Worker()

    async def stop_at_once(stop: Callable[[], None], kill: Callable[[], None]) -> None:
        stop()
        await anyio.sleep_forever()

    with anyio.fail_after(5):
        await run_until(worker, stop_at_once)
    assert worker.stopping.is_set()


async def test_a_kill_cancels_a_runnable_that_does_not_stop() -> None:
    worker = Worker(stubborn=True)
    with anyio.fail_after(5):
        await run_until(worker, stop_then_kill)
    assert worker.started
    assert worker.stopping.is_set()


async def test_task_status_is_passed_through() -> None:
    async with anyio.create_task_group() as tg:
        worker = Worker()
        await tg.start(lambda task_status: run_until(worker, never, task_status=task_status))
        assert worker.started
        tg.cancel_scope.cancel()
