"""The supervisor follows Erlang/OTP's supervisor: strategies, restart types,
restart intensity, shutdown policies, the runtime API and its errors — plus backoff.

Each worker appends ``start:<id>``, ``crash:<id>``, ``stop:<id>``, ``kill:<id>``...
to ``lab.log`` (see ``toy_workers``), so the start and stop order is asserted
exactly. Time is a ManualClock: nothing sleeps.
"""

from __future__ import annotations

import random

import anyio
import pytest
import structlog
from anyio.abc import TaskStatus
from toy_workers import (
    Boom,
    Harness,
    Lab,
    StartBoom,
    Worker,
    settle_exit,
    settle_restarts,
    supervising,
)

from diaspora.errors import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    ChildStartError,
    RestartIntensityExceeded,
    SimpleOneForOneError,
    SupervisorNotRunning,
)
from diaspora.events import (
    BackingOff,
    ChildStarted,
    Event,
    Exited,
    GaveUp,
    MemorySink,
    Restarted,
    Terminated,
)
from diaspora.log import configure_logging
from diaspora.supervision import (
    BRUTAL_KILL,
    INFINITY,
    Backoff,
    ChildCounts,
    ChildSpec,
    ChildStatus,
    ChildType,
    ManualClock,
    Restart,
    Shutdown,
    Strategy,
    Supervisor,
    SupervisorSpec,
    current_child,
)
from diaspora.testing import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def lab() -> Lab:
    return Lab()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def worker(
    lab: Lab,
    id: str,
    restart: Restart = Restart.PERMANENT,
    shutdown: Shutdown | None = None,
    *,
    hang_on_stop: bool = False,
) -> ChildSpec:
    return ChildSpec(
        id, start=lab.worker(hang_on_stop=hang_on_stop), restart=restart, shutdown=shutdown
    )


def supervisor(
    lab: Lab,
    clock: ManualClock,
    children: list[ChildSpec],
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    *,
    intensity: int = 3,
    period: float = 5.0,
    backoff: Backoff | None = None,
    name: str = "root",
) -> Supervisor:
    spec = SupervisorSpec(
        children, strategy=strategy, intensity=intensity, period=period, backoff=backoff
    )
    return Supervisor(spec, name=name, clock=clock, on_event=lab, rng=random.Random(0))


async def statuses(sup: Supervisor) -> dict[str | None, ChildStatus]:
    return {record.id: record.status for record in await sup.which_children()}


async def crash(lab: Lab, sup: Supervisor, child: str) -> None:
    victim = lab.current(child)
    victim.crash()
    await settle_exit(sup, victim)


# --- start and stop order -------------------------------------------------------------


async def test_children_start_in_order_and_stop_in_reverse_order(
    lab: Lab, clock: ManualClock
) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a"), worker(lab, "b"), worker(lab, "c")])
    async with supervising(sup) as run:
        assert lab.take_log() == ["start:a", "start:b", "start:c"]
    assert run.error is None
    assert lab.take_log() == ["stop:c", "stop:b", "stop:a"]


async def test_started_waits_for_every_initial_child(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a"), worker(lab, "b")])
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        assert lab.log == ["start:a", "start:b"]
        await sup.started()
        sup.request_stop()


# --- strategies: which siblings restart, in which order --------------------------------


async def test_one_for_one_restarts_only_the_failed_child(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a"), worker(lab, "b"), worker(lab, "c")])
    async with supervising(sup):
        lab.take_log()
        await crash(lab, sup, "b")
        assert lab.take_log() == ["crash:b", "start:b"]
        assert await statuses(sup) == dict.fromkeys("abc", ChildStatus.RUNNING)


async def test_one_for_all_stops_the_others_in_reverse_then_restarts_all_in_order(
    lab: Lab, clock: ManualClock
) -> None:
    children = [worker(lab, "a"), worker(lab, "b"), worker(lab, "c")]
    sup = supervisor(lab, clock, children, Strategy.ONE_FOR_ALL)
    async with supervising(sup):
        lab.take_log()
        await crash(lab, sup, "b")
        assert lab.take_log() == ["crash:b", "stop:c", "stop:a", "start:a", "start:b", "start:c"]


async def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it(
    lab: Lab, clock: ManualClock
) -> None:
    children = [worker(lab, c) for c in "abcd"]
    sup = supervisor(lab, clock, children, Strategy.REST_FOR_ONE)
    async with supervising(sup):
        lab.take_log()
        await crash(lab, sup, "b")
        assert lab.take_log() == ["crash:b", "stop:d", "stop:c", "start:b", "start:c", "start:d"]
        await crash(lab, sup, "d")
        assert lab.take_log() == ["crash:d", "start:d"]


async def test_one_for_all_removes_temporary_siblings_instead_of_restarting_them(
    lab: Lab, clock: ManualClock
) -> None:
    children = [worker(lab, "a"), worker(lab, "t", Restart.TEMPORARY), worker(lab, "c")]
    sup = supervisor(lab, clock, children, Strategy.ONE_FOR_ALL)
    async with supervising(sup):
        lab.take_log()
        await crash(lab, sup, "a")
        assert lab.take_log() == ["crash:a", "stop:c", "stop:t", "start:a", "start:c"]
        assert list(await statuses(sup)) == ["a", "c"]


async def test_one_for_all_restarts_a_terminated_sibling_too(lab: Lab, clock: ManualClock) -> None:
    # OTP: "all child processes are restarted", whether they were running or not
    children = [worker(lab, "a"), worker(lab, "b")]
    sup = supervisor(lab, clock, children, Strategy.ONE_FOR_ALL)
    async with supervising(sup):
        await sup.terminate_child("b")
        lab.take_log()
        await crash(lab, sup, "a")
        assert lab.take_log() == ["crash:a", "start:a", "start:b"]


async def test_a_child_that_is_not_restarted_leaves_its_siblings_alone(
    lab: Lab, clock: ManualClock
) -> None:
    children = [worker(lab, "a"), worker(lab, "t", Restart.TRANSIENT), worker(lab, "c")]
    sup = supervisor(lab, clock, children, Strategy.ONE_FOR_ALL)
    async with supervising(sup):
        lab.take_log()
        lab.current("t").exit()
        await settle_exit(sup, lab.current("t"))
        assert lab.take_log() == ["exit:t"]
        assert await statuses(sup) == {
            "a": ChildStatus.RUNNING,
            "t": ChildStatus.UNDEFINED,
            "c": ChildStatus.RUNNING,
        }


# --- restart types ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "how", "restarted", "kept"),
    [
        (Restart.PERMANENT, "exit", True, True),
        (Restart.PERMANENT, "shutdown", True, True),
        (Restart.PERMANENT, "crash", True, True),
        (Restart.TRANSIENT, "exit", False, True),
        (Restart.TRANSIENT, "shutdown", False, True),
        (Restart.TRANSIENT, "crash", True, True),
        (Restart.TEMPORARY, "exit", False, False),
        (Restart.TEMPORARY, "shutdown", False, False),
        (Restart.TEMPORARY, "crash", False, False),
    ],
)
async def test_restart_types_follow_otp_normal_and_abnormal_exits(
    lab: Lab, clock: ManualClock, restart: Restart, how: str, restarted: bool, kept: bool
) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a", restart), worker(lab, "b")])
    async with supervising(sup):
        victim = lab.current("a")
        getattr(victim, how)()
        await settle_exit(sup, victim)
        assert lab.starts("a") == (2 if restarted else 1)
        expected = {}
        if kept:
            expected["a"] = ChildStatus.RUNNING if restarted else ChildStatus.UNDEFINED
        expected["b"] = ChildStatus.RUNNING
        assert await statuses(sup) == expected
        exited = lab.of(Exited)
        assert exited[0].normal is (how != "crash")
        assert (
            exited[0].reason
            == {
                "exit": "normal",
                "shutdown": "shutdown",
                "crash": "Boom('a crashed')",
            }[how]
        )


# --- restart intensity ------------------------------------------------------------------


async def test_restarts_within_intensity_are_allowed(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a")], intensity=3, period=5.0)
    async with supervising(sup) as run:
        for _ in range(3):
            await crash(lab, sup, "a")
            await clock.advance(1.0)
        assert lab.starts("a") == 4
    assert run.error is None


async def test_restarts_spread_beyond_the_period_do_not_accumulate(
    lab: Lab, clock: ManualClock
) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a")], intensity=2, period=5.0)
    async with supervising(sup) as run:
        for _ in range(10):  # 2 restarts per 5.1 s window at most: never more than 2 in 5 s
            await crash(lab, sup, "a")
            await clock.advance(2.6)
        assert lab.starts("a") == 11
    assert run.error is None
    assert lab.of(GaveUp) == []


async def test_more_restarts_than_intensity_within_period_gives_up(
    lab: Lab, clock: ManualClock
) -> None:
    children = [worker(lab, "a"), worker(lab, "b"), worker(lab, "c")]
    sup = supervisor(lab, clock, children, intensity=2, period=5.0)
    run = Harness(sup)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.run)
        await sup.started()
        await crash(lab, sup, "b")
        await clock.advance(4.0)
        await crash(lab, sup, "b")
        await clock.advance(0.9)  # three restarts within 4.9 s
        lab.take_log()
        lab.current("b").crash()
        error = await run.wait_ended()
    assert isinstance(error, RestartIntensityExceeded)
    assert isinstance(error.__cause__, Boom)
    assert lab.take_log() == ["crash:b", "stop:c", "stop:a"]
    assert lab.of(GaveUp) == [
        GaveUp(
            name="root", child="b", reason="Boom('b crashed')", restarts=3, intensity=2, period=5.0
        )
    ]
    with pytest.raises(SupervisorNotRunning):
        await sup.which_children()


async def test_intensity_zero_gives_up_on_the_first_restart(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a")], intensity=0)
    run = Harness(sup)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.run)
        await sup.started()
        lab.current("a").crash()
        assert isinstance(await run.wait_ended(), RestartIntensityExceeded)
    assert lab.starts("a") == 1


async def test_giving_up_escalates_through_nested_supervisors_to_the_root(
    lab: Lab, clock: ManualClock
) -> None:
    leaf = SupervisorSpec([worker(lab, "w"), worker(lab, "x")], intensity=1)
    mid = SupervisorSpec([worker(lab, "m"), ChildSpec("leaf", start=leaf)], intensity=0)
    sup = supervisor(lab, clock, [worker(lab, "r"), ChildSpec("mid", start=mid)], intensity=0)
    run = Harness(sup)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.run)
        await sup.started()
        assert lab.take_log() == ["start:r", "start:m", "start:w", "start:x"]
        await crash(lab, sup, "w")  # leaf restarts w once...
        lab.current("w").crash()  # ...and gives up on the second crash
        error = await run.wait_ended()
    assert isinstance(error, RestartIntensityExceeded)
    assert lab.take_log() == [
        "crash:w",
        "start:w",
        "crash:w",
        "stop:x",  # leaf stops its children and fails,
        "stop:m",  # mid gives up at once and fails,
        "stop:r",  # and so does the root
    ]
    gave_up = [e.name for e in lab.of(GaveUp)]
    assert gave_up == ["root.mid.leaf", "root.mid", "root"]
    assert ("exited", "leaf") in lab.kinds(supervisor="root.mid")


async def test_a_parent_restarts_a_nested_supervisor_that_gave_up(
    lab: Lab, clock: ManualClock
) -> None:
    leaf = SupervisorSpec([worker(lab, "w")], intensity=0)
    sup = supervisor(lab, clock, [ChildSpec("leaf", start=leaf), worker(lab, "z")])
    async with supervising(sup):
        lab.take_log()
        await crash(lab, sup, "w")
        await lab.wait_event(Restarted, supervisor="root", child="leaf")
        assert lab.take_log() == ["crash:w", "start:w"]
        records = await sup.which_children()
        assert [(r.id, r.type, r.status) for r in records] == [
            ("leaf", ChildType.SUPERVISOR, ChildStatus.RUNNING),
            ("z", ChildType.WORKER, ChildStatus.RUNNING),
        ]
        assert lab.current("w").path == "root.leaf.w"


# --- shutdown policies ------------------------------------------------------------------


async def test_a_child_ignoring_request_stop_is_cancelled_after_its_timeout(
    lab: Lab, clock: ManualClock
) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a", shutdown=2.0, hang_on_stop=True)])
    async with supervising(sup), anyio.create_task_group() as tg:
        tg.start_soon(sup.terminate_child, "a")
        await wait_until(lambda: clock.sleepers == 1, interval=0.001)
        assert lab.current("a").stop_requested
        await clock.advance(1.9)
        assert not lab.current("a").done.is_set()
        await clock.advance(0.1)
        await lab.current("a").done.wait()
    assert lab.log == ["start:a", "kill:a"]
    assert lab.of(Terminated) == [Terminated(name="root", child="a", reason="killed")]


async def test_a_child_stopping_within_its_timeout_is_not_cancelled(
    lab: Lab, clock: ManualClock
) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a", shutdown=2.0)])
    async with supervising(sup):
        await sup.terminate_child("a")
        assert lab.log == ["start:a", "stop:a"]
        assert clock.sleepers == 0
    assert [e.reason for e in lab.of(Terminated)] == ["shutdown"]


async def test_brutal_kill_cancels_without_asking(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a", shutdown=BRUTAL_KILL)])
    async with supervising(sup):
        await sup.terminate_child("a")
        assert lab.log == ["start:a", "kill:a"]
        assert not lab.current("a").stop_requested


async def test_infinity_waits_for_the_child_however_long_it_takes(
    lab: Lab, clock: ManualClock
) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a", shutdown=INFINITY, hang_on_stop=True)])
    async with supervising(sup), anyio.create_task_group() as tg:
        tg.start_soon(sup.terminate_child, "a")
        await wait_until(lambda: lab.current("a").stop_requested, interval=0.001)
        await clock.advance(1e9)
        assert clock.sleepers == 0
        assert not lab.current("a").done.is_set()
        lab.current("a").finish_stopping()
    assert lab.log == ["start:a", "stop:a"]


async def test_a_supervisor_child_stops_its_own_children_before_its_elder_siblings(
    lab: Lab, clock: ManualClock
) -> None:
    inner = SupervisorSpec([worker(lab, "x"), worker(lab, "y")])
    sup = supervisor(lab, clock, [worker(lab, "a"), ChildSpec("inner", start=inner)])
    async with supervising(sup):
        assert lab.take_log() == ["start:a", "start:x", "start:y"]
    assert lab.take_log() == ["stop:y", "stop:x", "stop:a"]


# --- simple_one_for_one -----------------------------------------------------------------


def dynamic(lab: Lab, clock: ManualClock, restart: Restart = Restart.PERMANENT) -> Supervisor:
    return supervisor(lab, clock, [worker(lab, "w", restart)], Strategy.SIMPLE_ONE_FOR_ONE)


async def test_simple_one_for_one_starts_anonymous_children_with_the_given_args(
    lab: Lab, clock: ManualClock
) -> None:
    sup = dynamic(lab, clock)
    async with supervising(sup):
        assert lab.log == []
        first = await sup.start_child("edge1", 7)
        second = await sup.start_child("edge2", 8)
        assert [w.args for w in (lab.current("w-1"), lab.current("w-2"))] == [
            ("edge1", 7),
            ("edge2", 8),
        ]
        records = await sup.which_children()
        assert [(r.id, r.runnable, r.status) for r in records] == [
            (None, first, ChildStatus.RUNNING),
            (None, second, ChildStatus.RUNNING),
        ]
        assert await sup.count_children() == ChildCounts(
            specs=1, active=2, supervisors=0, workers=2
        )
        lab.take_log()
    assert sorted(lab.log) == ["stop:w-1", "stop:w-2"]  # in parallel: no order (as in OTP)


async def test_simple_one_for_one_terminates_by_handle_only(lab: Lab, clock: ManualClock) -> None:
    sup = dynamic(lab, clock)
    async with supervising(sup):
        handle = await sup.start_child()
        with pytest.raises(SimpleOneForOneError):
            await sup.terminate_child("w")
        await sup.terminate_child(handle)
        assert await sup.which_children() == []
        with pytest.raises(ChildNotFound):
            await sup.terminate_child(Worker(lab, ()))  # never one of its children
        for call in (sup.restart_child, sup.delete_child):
            with pytest.raises(SimpleOneForOneError):
                await call("w")


async def test_simple_one_for_one_restarts_a_crashed_child_with_its_args(
    lab: Lab, clock: ManualClock
) -> None:
    sup = dynamic(lab, clock)
    async with supervising(sup):
        handle = await sup.start_child("edge1")
        await sup.start_child("edge2")
        await crash(lab, sup, "w-1")
        assert lab.starts("w-1") == 2
        assert lab.current("w-1").args == ("edge1",)
        assert lab.current("w-1").incarnation == 1
        records = await sup.which_children()
        assert records[0].runnable is lab.current("w-1")
        await sup.terminate_child(handle)  # the first handle still names the child
        assert len(await sup.which_children()) == 1
        assert lab.log[-1] == "stop:w-1"


async def test_simple_one_for_one_forgets_children_that_are_not_restarted(
    lab: Lab, clock: ManualClock
) -> None:
    sup = dynamic(lab, clock, Restart.TRANSIENT)
    async with supervising(sup):
        await sup.start_child()
        victim = lab.current("w-1")
        victim.exit()
        await settle_exit(sup, victim)
        assert await sup.which_children() == []
        assert await sup.count_children() == ChildCounts(
            specs=1, active=0, supervisors=0, workers=0
        )


async def test_simple_one_for_one_start_failure_is_an_error_and_adds_nothing(
    lab: Lab, clock: ManualClock
) -> None:
    sup = dynamic(lab, clock)
    async with supervising(sup):
        lab.fail_starts("w-1", 1)
        with pytest.raises(ChildStartError) as failed:
            await sup.start_child()
        assert isinstance(failed.value.__cause__, StartBoom)
        assert await sup.which_children() == []


# --- runtime API and its errors ---------------------------------------------------------


async def test_start_child_appends_a_child_after_the_others(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a")], Strategy.REST_FOR_ONE)
    async with supervising(sup):
        runnable = await sup.start_child(worker(lab, "b"))
        assert runnable is lab.current("b")
        lab.take_log()
        await crash(lab, sup, "a")  # b was started after a: rest_for_one restarts it too
        assert lab.take_log() == ["crash:a", "stop:b", "start:a", "start:b"]


async def test_start_child_errors(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a")])
    async with supervising(sup):
        with pytest.raises(ChildAlreadyStarted):
            await sup.start_child(worker(lab, "a"))
        await sup.terminate_child("a")
        with pytest.raises(ChildAlreadyPresent):
            await sup.start_child(worker(lab, "a"))
        lab.fail_starts("b", 1)
        with pytest.raises(ChildStartError) as failed:
            await sup.start_child(worker(lab, "b"))
        assert failed.value.child == "b"
        assert [r.id for r in await sup.which_children()] == ["a"]
        with pytest.raises(TypeError):
            await sup.start_child("not a spec")


async def test_terminate_child_keeps_the_spec_and_restart_child_starts_it_again(
    lab: Lab, clock: ManualClock
) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a"), worker(lab, "b")])
    async with supervising(sup):
        await sup.terminate_child("a")
        await sup.terminate_child("a")  # terminating a stopped child is fine (OTP: ok)
        assert await statuses(sup) == {"a": ChildStatus.UNDEFINED, "b": ChildStatus.RUNNING}
        assert await sup.count_children() == ChildCounts(
            specs=2, active=1, supervisors=0, workers=2
        )
        runnable = await sup.restart_child("a")
        assert runnable is lab.current("a")
        await sup.terminate_child(runnable)  # by its running Runnable, too
        with pytest.raises(ChildNotFound):
            await sup.terminate_child("nope")
    assert lab.log == ["start:a", "start:b", "stop:a", "start:a", "stop:a", "stop:b"]


async def test_terminating_a_temporary_child_removes_it(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "t", Restart.TEMPORARY)])
    async with supervising(sup):
        await sup.terminate_child("t")
        assert await sup.which_children() == []
        with pytest.raises(ChildNotFound):
            await sup.restart_child("t")


async def test_restart_child_and_delete_child_errors(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a")])
    async with supervising(sup):
        for call in (sup.restart_child, sup.delete_child):
            with pytest.raises(ChildRunning):
                await call("a")
            with pytest.raises(ChildNotFound):
                await call("nope")
        await sup.terminate_child("a")
        lab.fail_starts("a", 1)
        with pytest.raises(ChildStartError):
            await sup.restart_child("a")
        assert await statuses(sup) == {"a": ChildStatus.UNDEFINED}
        await sup.delete_child("a")
        assert await sup.which_children() == []
        with pytest.raises(ChildNotFound):
            await sup.delete_child("a")
        await sup.start_child(worker(lab, "a"))  # the id is free again


async def test_calls_on_a_restarting_child(lab: Lab, clock: ManualClock) -> None:
    backoff = Backoff(initial=1.0, jitter=0.0)
    sup = supervisor(lab, clock, [worker(lab, "a")], backoff=backoff)
    async with supervising(sup):
        await crash(lab, sup, "a")
        assert await statuses(sup) == {"a": ChildStatus.RESTARTING}
        assert await sup.count_children() == ChildCounts(
            specs=1, active=0, supervisors=0, workers=1
        )
        with pytest.raises(ChildRestarting):
            await sup.restart_child("a")
        with pytest.raises(ChildRestarting):
            await sup.delete_child("a")
        with pytest.raises(ChildAlreadyPresent):
            await sup.start_child(worker(lab, "a"))
        await sup.terminate_child("a")  # cancels the pending restart
        assert await statuses(sup) == {"a": ChildStatus.UNDEFINED}
        assert clock.sleepers == 0
        await clock.advance(10.0)
        assert lab.starts("a") == 1


async def test_runtime_calls_on_a_stopped_supervisor_fail(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a")])
    async with supervising(sup):
        pass
    with pytest.raises(SupervisorNotRunning):
        await sup.count_children()
    with pytest.raises(RuntimeError, match="already run"):
        await sup.run()


async def test_counts_supervisors_and_workers(lab: Lab, clock: ManualClock) -> None:
    inner = SupervisorSpec([worker(lab, "x")])
    sup = supervisor(lab, clock, [worker(lab, "a"), ChildSpec("inner", start=inner)])
    async with supervising(sup):
        await sup.terminate_child("a")
        assert await sup.count_children() == ChildCounts(
            specs=2, active=1, supervisors=1, workers=1
        )


# --- failing to start -------------------------------------------------------------------


async def test_a_child_failing_to_start_fails_the_supervisor_start(
    lab: Lab, clock: ManualClock
) -> None:
    lab.fail_starts("c")
    sup = supervisor(lab, clock, [worker(lab, c) for c in "abcd"])
    run = Harness(sup)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.run)
            with pytest.raises(SupervisorNotRunning):
                await sup.started()
    assert isinstance(run.error, ChildStartError)
    assert run.error.child == "c"
    assert isinstance(run.error.__cause__, StartBoom)
    assert lab.log == ["start:a", "start:b", "fail:c", "stop:b", "stop:a"]
    assert ("start_failed", "c") in lab.kinds()


async def test_a_nested_supervisor_failing_to_start_fails_its_parent_start(
    lab: Lab, clock: ManualClock
) -> None:
    lab.fail_starts("y")
    inner = SupervisorSpec([worker(lab, "x"), worker(lab, "y")])
    sup = supervisor(lab, clock, [worker(lab, "a"), ChildSpec("inner", start=inner)])
    run = Harness(sup)
    with anyio.fail_after(5):
        await run.run()
    assert isinstance(run.error, ChildStartError)
    assert run.error.child == "inner"
    assert isinstance(run.error.__cause__, ChildStartError)
    assert lab.log == ["start:a", "start:x", "fail:y", "stop:x", "stop:a"]


async def test_a_restart_that_fails_to_start_is_retried_and_counted(
    lab: Lab, clock: ManualClock
) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a"), worker(lab, "b")], intensity=3)
    async with supervising(sup):
        lab.fail_starts("b", 2)
        await crash(lab, sup, "b")
        await settle_restarts(sup)
        assert lab.take_log() == ["start:a", "start:b", "crash:b", "fail:b", "fail:b", "start:b"]
        assert await statuses(sup) == dict.fromkeys("ab", ChildStatus.RUNNING)
    run = Harness(supervisor(lab, clock, [worker(lab, "c")], intensity=3, name="other"))
    lab.fail_starts("c", 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.run)
        await run.sup.started()
        lab.fail_starts("c")  # never starts again
        lab.current("c").crash()
        assert isinstance(await run.wait_ended(), RestartIntensityExceeded)
    # restarts 1-3 fail to start, each counted: the 4th restart would exceed intensity 3
    assert lab.log[-5:] == ["start:c", "crash:c", "fail:c", "fail:c", "fail:c"]


async def test_request_stop_while_a_child_hangs_in_its_start(lab: Lab, clock: ManualClock) -> None:
    lab.hang_in_start.add("b")
    sup = supervisor(lab, clock, [worker(lab, "a"), worker(lab, "b", shutdown=BRUTAL_KILL)])
    run = Harness(sup)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.run)
            await lab.wait_log("starting:b")
            sup.request_stop()
            await run.wait_ended()
    assert run.error is None
    assert lab.log == ["start:a", "starting:b", "kill:b", "stop:a"]


async def test_start_functions_must_return_runnables(lab: Lab, clock: ManualClock) -> None:
    async def not_plain() -> None: ...

    for bad in (lambda: 42, not_plain):
        spec = SupervisorSpec([ChildSpec("a", start=bad)])  # type: ignore[arg-type]
        sup = Supervisor(spec, name="r", clock=clock)
        with pytest.raises(ChildStartError, match="a") as failed:
            await sup.run()
        assert isinstance(failed.value.__cause__, TypeError)


# --- backoff ----------------------------------------------------------------------------


async def test_backoff_delays_consecutive_restarts_exponentially(
    lab: Lab, clock: ManualClock
) -> None:
    backoff = Backoff(initial=0.5, factor=2.0, max=1.5, jitter=0.0, reset_after=100.0)
    sup = supervisor(lab, clock, [worker(lab, "a")], intensity=10, period=1.0, backoff=backoff)
    async with supervising(sup):
        for attempt, delay in enumerate([0.5, 1.0, 1.5, 1.5], start=1):
            await crash(lab, sup, "a")
            assert await statuses(sup) == {"a": ChildStatus.RESTARTING}
            assert lab.events[-1] == BackingOff(
                name="root", child="a", attempt=attempt, delay_s=delay
            )
            await clock.advance(delay - 0.25)
            assert lab.starts("a") == attempt
            await clock.advance(0.25)
            await lab.wait_event(Restarted, child="a", attempt=attempt)
            assert await statuses(sup) == {"a": ChildStatus.RUNNING}


async def test_backoff_starts_over_after_the_child_stayed_up(lab: Lab, clock: ManualClock) -> None:
    backoff = Backoff(initial=1.0, factor=3.0, max=100.0, jitter=0.0, reset_after=10.0)
    sup = supervisor(lab, clock, [worker(lab, "a")], intensity=10, backoff=backoff)
    async with supervising(sup):
        delays = []
        for uptime in (0.0, 9.0, 10.0, 0.0):
            await clock.advance(uptime)
            await crash(lab, sup, "a")
            delays.append(lab.last(BackingOff).delay_s)
            await clock.advance(delays[-1])
            await lab.wait_event(Restarted, child="a")
            lab.events.clear()
        assert delays == [1.0, 3.0, 1.0, 3.0]


async def test_backoff_jitter_stays_within_bounds(lab: Lab, clock: ManualClock) -> None:
    backoff = Backoff(initial=1.0, factor=1.0, max=1.0, jitter=0.5)
    sup = supervisor(lab, clock, [worker(lab, "a")], intensity=100, backoff=backoff)
    async with supervising(sup):
        delays = set()
        for _ in range(5):
            await crash(lab, sup, "a")
            delay = lab.last(BackingOff).delay_s
            delays.add(delay)
            assert 0.5 <= delay <= 1.5
            await clock.advance(delay + 0.001)  # the event rounds to the millisecond
            await lab.wait_event(Restarted, child="a")
            lab.events.clear()
        assert len(delays) > 1


async def test_one_for_all_backoff_stops_siblings_at_once_and_restarts_them_later(
    lab: Lab, clock: ManualClock
) -> None:
    backoff = Backoff(initial=2.0, jitter=0.0)
    children = [worker(lab, "a"), worker(lab, "b")]
    sup = supervisor(lab, clock, children, Strategy.ONE_FOR_ALL, backoff=backoff)
    async with supervising(sup):
        lab.take_log()
        await crash(lab, sup, "a")
        assert lab.take_log() == ["crash:a", "stop:b"]
        assert await statuses(sup) == dict.fromkeys("ab", ChildStatus.RESTARTING)
        await clock.advance(2.0)
        await lab.wait_event(Restarted, child="b")
        assert lab.take_log() == ["start:a", "start:b"]


async def test_stopping_cancels_pending_restarts(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a")], backoff=Backoff(initial=5.0))
    async with supervising(sup) as run:
        await crash(lab, sup, "a")
        assert clock.sleepers == 1
    assert run.error is None
    assert clock.sleepers == 0
    assert lab.starts("a") == 1


# --- events and context -----------------------------------------------------------------


async def test_every_decision_is_an_event(lab: Lab, clock: ManualClock) -> None:
    children = [worker(lab, "a"), worker(lab, "b", Restart.TRANSIENT)]
    sup = supervisor(lab, clock, children, Strategy.ONE_FOR_ALL, intensity=1)
    run = Harness(sup)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run.run)
        await sup.started()
        await crash(lab, sup, "a")
        lab.current("b").crash()
        await run.wait_ended()
    assert lab.kinds() == [
        ("started", "a"),
        ("started", "b"),
        ("exited", "a"),
        ("terminated", "b"),
        ("restarted", "a"),
        ("restarted", "b"),
        ("exited", "b"),
        ("gave_up", "b"),
        ("terminated", "a"),
    ]
    restarted = lab.of(Restarted)
    assert restarted[1] == Restarted(name="root", child="b", incarnation=1, attempt=1, cause="a")
    assert restarted[1].fields() == {  # the fields of its log line and wire record
        "supervisor": "root",
        "child": "b",
        "incarnation": 1,
        "attempt": 1,
        "cause": "a",
    }
    exited = lab.of(Exited)
    assert exited[0].fields() == {
        "supervisor": "root",
        "child": "a",
        "reason": "Boom('a crashed')",
        "normal": False,
    }


async def test_nested_supervisors_report_to_the_shared_sink_under_their_own_names(
    lab: Lab, clock: ManualClock
) -> None:
    sink = MemorySink()
    inner = SupervisorSpec([worker(lab, "x")])
    spec = SupervisorSpec([ChildSpec("inner", start=inner)])
    sup = Supervisor(spec, name="root", clock=clock, on_event=sink)
    async with supervising(sup):
        pass
    assert [e.subject_name for e in sink.events] == [
        "diaspora.events.supervision.root_inner.started",
        "diaspora.events.supervision.root.started",
        "diaspora.events.supervision.root_inner.terminated",
        "diaspora.events.supervision.root.terminated",
    ]
    assert sink.events[0] == ChildStarted(name="root.inner", child="x", incarnation=0)
    assert sink.events[0].fields() == {"supervisor": "root.inner", "child": "x", "incarnation": 0}


async def test_each_event_is_logged_once_by_the_supervisor_or_by_a_sink_that_logs(
    lab: Lab, clock: ManualClock
) -> None:
    class LoggingSink(MemorySink):
        logs_events = True

    configure_logging()  # before capturing: a first configuration would end the capture
    for sink, logged_by_supervisor in ((MemorySink(), True), (LoggingSink(), False)):
        with structlog.testing.capture_logs() as logs:
            sup = Supervisor(
                SupervisorSpec([worker(lab, "a")]), name="r", clock=clock, on_event=sink
            )
            async with supervising(sup):
                pass
        decisions = [line for line in logs if line.get("supervisor") == "r"]
        assert [e.kind for e in sink.events] == ["started", "terminated"]
        expected = [("started", "info"), ("terminated", "info")] if logged_by_supervisor else []
        assert [(line["event"], line["log_level"]) for line in decisions] == expected


async def test_a_failing_event_sink_does_not_break_supervision(clock: ManualClock) -> None:
    lab = Lab()

    class Broken:
        async def emit(self, event: Event) -> None:
            raise RuntimeError("sink down")

    sup = Supervisor(SupervisorSpec([worker(lab, "a")]), name="r", clock=clock, on_event=Broken())
    async with supervising(sup):
        await crash(lab, sup, "a")
        assert lab.starts("a") == 2


async def test_children_see_their_place_in_the_tree(lab: Lab, clock: ManualClock) -> None:
    inner = SupervisorSpec([worker(lab, "x")])
    sup = supervisor(lab, clock, [ChildSpec("inner", start=inner)], name="ptycho")
    async with supervising(sup):
        await crash(lab, sup, "x")
        paths = [(w.path, w.incarnation) for w in lab.instances["x"]]
    assert paths == [("ptycho.inner.x", 0), ("ptycho.inner.x", 1)]


def test_current_child_outside_a_child_says_where_it_works() -> None:
    with pytest.raises(LookupError, match="outside a supervised child"):
        current_child()


async def test_request_stop_before_run_starts_nothing(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a")])
    sup.request_stop()
    with anyio.fail_after(5):
        await sup.run()
    assert lab.log == []


async def test_returning_before_started_is_a_start_then_a_normal_exit(clock: ManualClock) -> None:
    runs: list[str] = []

    class OneShot:
        async def run(self, *, task_status: TaskStatus[None]) -> None:
            runs.append(current_child().id)

        def request_stop(self) -> None:
            pass

    spec = SupervisorSpec([ChildSpec("job", start=OneShot, restart=Restart.TRANSIENT)])
    sup = Supervisor(spec, name="r", clock=clock)
    async with supervising(sup):
        await wait_until(lambda: runs == ["job"], interval=0.001)
        assert await statuses(sup) == {"job": ChildStatus.UNDEFINED}


async def test_cancelling_a_supervisor_kills_its_children(lab: Lab, clock: ManualClock) -> None:
    sup = supervisor(lab, clock, [worker(lab, "a"), worker(lab, "b")])
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            tg.cancel_scope.cancel()
    assert sorted(lab.log) == ["kill:a", "kill:b", "start:a", "start:b"]
    with pytest.raises(SupervisorNotRunning):
        await sup.which_children()
