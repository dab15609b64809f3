"""Cases of Erlang/OTP's ``supervisor_SUITE.erl``, re-expressed against the pure kernel.

Failing restarts retried as messages (OTP's ``try_again_restart``), terminating a
``simple_one_for_one`` child that has already exited, the parallel shutdown of
``simple_one_for_one`` children, and the validation of ``period``. Time is a
ManualClock; workers record what they do in ``lab.log`` (see ``toy_workers``).
"""

from __future__ import annotations

import math
import random

import anyio
import pytest
from toy_workers import Harness, Lab, settle_exit, settle_restarts, supervising

from diaspora.errors import (
    ChildAlreadyPresent,
    ChildRestarting,
    ConfigError,
    RestartIntensityExceeded,
)
from diaspora.supervision import (
    ChildCounts,
    ChildSpec,
    ChildStatus,
    ManualClock,
    Restart,
    Strategy,
    Supervisor,
    SupervisorSpec,
)
from diaspora.testing import wait_until
from diaspora.workflow import parse_config

pytestmark = pytest.mark.anyio


@pytest.fixture
def lab() -> Lab:
    return Lab()


def supervisor(
    lab: Lab,
    children: list[ChildSpec],
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    *,
    intensity: int = 3,
) -> Supervisor:
    spec = SupervisorSpec(children, strategy=strategy, intensity=intensity, period=3600.0)
    return Supervisor(spec, name="sup", clock=ManualClock(), on_event=lab, rng=random.Random(0))


async def statuses(sup: Supervisor) -> dict[str | None, ChildStatus]:
    return {record.id: record.status for record in await sup.which_children()}


# --- a restart that keeps failing does not block the supervisor (try_again_restart) ----


async def test_a_failing_restart_is_retried_while_the_supervisor_serves_calls(lab: Lab) -> None:
    children = [ChildSpec("a", lab.worker()), ChildSpec("b", lab.worker())]
    sup = supervisor(lab, children, intensity=100_000)
    async with supervising(sup):
        lab.fail_starts("b")  # never starts again
        victim = lab.current("b")
        victim.crash()
        await settle_exit(sup, victim)
        # each call is served between two attempts: the supervisor answers all of them
        assert await statuses(sup) == {"a": ChildStatus.RUNNING, "b": ChildStatus.RESTARTING}
        assert await sup.count_children() == ChildCounts(
            specs=2, active=1, supervisors=0, workers=2
        )
        with pytest.raises(ChildAlreadyPresent):
            await sup.start_child(ChildSpec("b", lab.worker()))
        with pytest.raises(ChildRestarting):
            await sup.restart_child("b")
        with pytest.raises(ChildRestarting):
            await sup.delete_child("b")
        assert lab.log.count("fail:b") >= 1
        await sup.terminate_child("b")  # ends the loop
        failed = lab.log.count("fail:b")
        assert await statuses(sup) == {"a": ChildStatus.RUNNING, "b": ChildStatus.UNDEFINED}
        for _ in range(5):
            await sup.count_children()
        assert lab.log.count("fail:b") == failed  # no attempt after terminate_child
        lab.start_failures.clear()
        await sup.restart_child("b")
        assert await statuses(sup) == dict.fromkeys("ab", ChildStatus.RUNNING)


async def test_a_thousand_failing_restarts_in_a_row_do_not_exhaust_the_stack(lab: Lab) -> None:
    sup = supervisor(lab, [ChildSpec("a", lab.worker())], intensity=2_000)
    async with supervising(sup, timeout=60) as run:
        lab.fail_starts("a", 1_000)
        victim = lab.current("a")
        victim.crash()
        await settle_exit(sup, victim)
        await settle_restarts(sup)
        assert run.error is None
        assert lab.log.count("fail:a") == 1_000
        assert await statuses(sup) == {"a": ChildStatus.RUNNING}


async def test_each_failed_restart_attempt_counts_toward_intensity(lab: Lab) -> None:
    sup = supervisor(lab, [ChildSpec("a", lab.worker())], intensity=5)
    run = Harness(sup)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.run)
            await sup.started()
            lab.fail_starts("a")
            lab.current("a").crash()
            assert isinstance(await run.wait_ended(), RestartIntensityExceeded)
    # the crash's restart and 4 retries fail: the 6th restart would exceed intensity 5
    assert lab.log.count("fail:a") == 5


async def test_a_failing_sibling_restart_under_one_for_all_restarts_the_set_again(
    lab: Lab,
) -> None:
    children = [ChildSpec(c, lab.worker()) for c in "abc"]
    sup = supervisor(lab, children, Strategy.ONE_FOR_ALL, intensity=10)
    async with supervising(sup):
        lab.take_log()
        lab.fail_starts("b", 1)
        victim = lab.current("a")
        victim.crash()
        await settle_exit(sup, victim)
        await settle_restarts(sup)
        # as OTP: the retry stops the ones already restarted and starts the whole set again
        assert lab.take_log() == [
            "crash:a",
            "stop:c",
            "stop:b",
            "start:a",
            "fail:b",
            "stop:a",
            "start:a",
            "start:b",
            "start:c",
        ]


# --- simple_one_for_one -----------------------------------------------------------------


@pytest.mark.parametrize("restart", [Restart.TRANSIENT, Restart.TEMPORARY])
async def test_terminating_a_simple_one_for_one_child_that_already_exited_is_ok(
    lab: Lab, restart: Restart
) -> None:
    sup = supervisor(
        lab, [ChildSpec("w", lab.worker(), restart=restart)], Strategy.SIMPLE_ONE_FOR_ONE
    )
    async with supervising(sup):
        handle = await sup.start_child()
        assert handle is not None
        victim = lab.current("w-1")
        victim.exit()
        await settle_exit(sup, victim)
        assert await sup.which_children() == []
        await sup.terminate_child(handle)  # OTP: terminating a dead child is ok
        await sup.terminate_child(handle)
        assert await sup.which_children() == []


async def test_simple_one_for_one_children_are_stopped_in_parallel(lab: Lab) -> None:
    template = ChildSpec("w", lab.worker(hang_on_stop=True), shutdown=60.0)
    sup = supervisor(lab, [template], Strategy.SIMPLE_ONE_FOR_ONE)
    run = Harness(sup)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(run.run)
            for _ in range(4):
                await sup.start_child()
            workers = [lab.current(f"w-{n}") for n in range(1, 5)]
            sup.request_stop()
            # one after another, only the first would be asked while it hangs in its stop
            await wait_until(
                lambda: all(w.stop_requested for w in workers), what="every child asked to stop"
            )
            assert not any(w.done.is_set() for w in workers)
            for worker in workers:
                worker.finish_stopping()
            await run.wait_ended()
    assert run.error is None
    assert sorted(lab.take_log()) == [f"{e}:w-{n}" for e in ("start", "stop") for n in range(1, 5)]


# --- period: a finite number of seconds > 0 -------------------------------------------------


@pytest.mark.parametrize("period", [math.inf, -math.inf, math.nan, 0, -1.0])
def test_period_must_be_a_finite_positive_number(period: float) -> None:
    with pytest.raises(ConfigError, match=r"^supervisor\.period: .* is not a finite number"):
        SupervisorSpec(period=period)


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_a_config_files_period_is_checked_by_the_spec(value: str) -> None:
    text = f"[supervisor]\nperiod = {value}\n"
    with pytest.raises(ConfigError, match=r"^demo\.toml: supervisor\.period: .* is not a finite"):
        parse_config(text, source="demo.toml")
    nested = f"[supervisor]\n[[supervisor.children]]\nid = 'sub'\nchildren = []\nperiod = {value}\n"
    with pytest.raises(
        ConfigError, match=r"^demo\.toml: supervisor\.children\[0\]\.period: .* is not a finite"
    ):
        parse_config(nested, source="demo.toml")
