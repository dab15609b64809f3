"""The supervisor against a reference model of OTP's supervisor rules.

Random sequences of crashes, normal exits, start failures, runtime calls and
clock advances are applied both to a real :class:`Supervisor` (running in an
anyio portal, on a ManualClock) and to :class:`OtpModel`, a few lines of
synchronous Python stating OTP's rules. After every step the two must agree
exactly: the start/stop log, which children run, ``which_children``,
``count_children``, the error of each call, and whether the supervisor gave up.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from toy_workers import Harness, Lab, settle_exit, settle_restarts

from diaspora.errors import (
    ChildAlreadyPresent,
    ChildAlreadyStarted,
    ChildNotFound,
    ChildRunning,
    ChildStartError,
    RestartIntensityExceeded,
    SimpleOneForOneError,
    SupervisorError,
    SupervisorNotRunning,
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

_T = TypeVar("_T")
IDS = ["a", "b", "c", "d", "e"]


# --- the reference model ----------------------------------------------------------------


@dataclass
class ModelChild:
    name: str
    restart: Restart
    dynamic: bool = False
    running: bool = True


@dataclass
class OtpModel:
    """OTP's supervisor rules, synchronously; ``log`` is what the workers should record."""

    strategy: Strategy
    intensity: int
    period: float
    template: Restart = Restart.PERMANENT
    children: list[ModelChild] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    ignores: dict[str, int] = field(default_factory=dict)
    now: float = 0.0
    serial: int = 0
    gave_up: bool = False
    log: list[str] = field(default_factory=list)

    @property
    def simple(self) -> bool:
        return self.strategy is Strategy.SIMPLE_ONE_FOR_ONE

    def find(self, name: str) -> ModelChild | None:
        return next((c for c in self.children if c.name == name), None)

    def try_start(self, child: ModelChild) -> bool | None:
        """True: started; False: failed to start; None: declined (OTP's ignore)."""
        if self.ignores.get(child.name, 0) > 0:
            self.ignores[child.name] -= 1
            self.log.append(f"ignore:{child.name}")
            return None
        if self.failures.get(child.name, 0) > 0:
            self.failures[child.name] -= 1
            self.log.append(f"fail:{child.name}")
            return False
        self.log.append(f"start:{child.name}")
        child.running = True
        return True

    def stop(self, child: ModelChild) -> None:
        if child.running:
            self.log.append(f"stop:{child.name}")
            child.running = False

    # a child ended by itself
    def exit(self, child: ModelChild, how: str) -> None:
        self.log.append(f"{how}:{child.name}")
        child.running = False
        abnormal = how == "crash"
        if child.restart is Restart.PERMANENT or (child.restart is Restart.TRANSIENT and abnormal):
            self.restart(child)
        elif child.restart is Restart.TEMPORARY or child.dynamic:
            self.children.remove(child)

    def restart(self, cause: ModelChild) -> None:
        self.restarts = [t for t in self.restarts if t >= self.now - self.period] + [self.now]
        if len(self.restarts) > self.intensity:
            self.gave_up = True
            for child in reversed(self.children):
                self.stop(child)
            return
        if self.strategy is Strategy.ONE_FOR_ALL:
            group = list(self.children)
        elif self.strategy is Strategy.REST_FOR_ONE:
            group = self.children[self.children.index(cause) :]
        else:
            group = [cause]
        for child in reversed(group):
            self.stop(child)
        for child in group:
            if child is not cause and child.restart is Restart.TEMPORARY:
                self.children.remove(child)
        for child in [c for c in group if c in self.children]:
            started = self.try_start(child)
            if started is False:
                self.restart(child)  # a failed restart counts, and is retried
                return
            if started is None and child.dynamic:
                self.children.remove(child)  # declined: not restarted, not counted

    # runtime calls: the error OTP returns, or None
    def terminate_child(self, name: str, *, by_id: bool) -> type[SupervisorError] | None:
        if self.gave_up:
            return SupervisorNotRunning
        if self.simple and by_id:
            return SimpleOneForOneError
        child = self.find(name)
        if child is None:
            return ChildNotFound
        self.stop(child)
        if child.dynamic or child.restart is Restart.TEMPORARY:
            self.children.remove(child)
        return None

    def restart_child(self, name: str) -> type[SupervisorError] | None:
        if self.gave_up:
            return SupervisorNotRunning
        if self.simple:
            return SimpleOneForOneError
        child = self.find(name)
        if child is None:
            return ChildNotFound
        if child.running:
            return ChildRunning
        return ChildStartError if self.try_start(child) is False else None

    def delete_child(self, name: str) -> type[SupervisorError] | None:
        if self.gave_up:
            return SupervisorNotRunning
        if self.simple:
            return SimpleOneForOneError
        child = self.find(name)
        if child is None:
            return ChildNotFound
        if child.running:
            return ChildRunning
        self.children.remove(child)
        return None

    def start_child(self, name: str, restart: Restart) -> type[SupervisorError] | None:
        if self.gave_up:
            return SupervisorNotRunning
        existing = self.find(name)
        if existing is not None:
            return ChildAlreadyStarted if existing.running else ChildAlreadyPresent
        child = ModelChild(name, restart, running=False)
        started = self.try_start(child)
        if started is False:
            return ChildStartError
        if started is not None or restart is not Restart.TEMPORARY:
            self.children.append(child)
        return None

    def start_dynamic(self) -> tuple[str, type[SupervisorError] | None]:
        if self.gave_up:
            return "", SupervisorNotRunning
        self.serial += 1
        child = ModelChild(f"w-{self.serial}", self.template, dynamic=True, running=False)
        started = self.try_start(child)
        if started is False:
            return child.name, ChildStartError
        if started:
            self.children.append(child)
        return child.name, None

    def records(self) -> list[tuple[str | None, ChildStatus]]:
        return [
            (
                None if c.dynamic else c.name,
                ChildStatus.RUNNING if c.running else ChildStatus.UNDEFINED,
            )
            for c in self.children
        ]

    def counts(self) -> ChildCounts:
        active = sum(c.running for c in self.children)
        specs = 1 if self.simple else len(self.children)
        return ChildCounts(specs, active, 0, len(self.children))


# --- the machine ------------------------------------------------------------------------


class SupervisorAgainstModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal("asyncio")
        self.portal = self._portal_cm.__enter__()
        self.lab = Lab()
        self.clock = ManualClock()
        self.model: OtpModel | None = None
        self.handles: dict[str, Any] = {}  # dynamic child name -> handle start_child returned

    def teardown(self) -> None:
        try:
            if self.model is not None and not self.harness.ended.is_set():
                running = self.running()
                self.call(self._stop)
                assert self.harness.error is None
                expected = [f"stop:{name}" for name in reversed(running)]
                assert self.normal_order(self.lab.take_log()) == self.normal_order(expected)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def call(self, fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        async def bounded() -> _T:
            with anyio.fail_after(10):
                return await fn(*args)

        return self.portal.call(bounded)

    @property
    def m(self) -> OtpModel:
        assert self.model is not None
        return self.model

    @property
    def alive(self) -> bool:
        return self.model is not None and not self.m.gave_up and not self.harness.ended.is_set()

    # -- set-up

    @initialize(
        strategy=st.sampled_from(Strategy),
        intensity=st.sampled_from([0, 1, 2, 3, 3, 5, 5]),
        period=st.sampled_from([1.0, 5.0]),
        restarts=st.lists(st.sampled_from(Restart), min_size=1, max_size=5),
    )
    def start_supervisor(
        self, strategy: Strategy, intensity: int, period: float, restarts: list[Restart]
    ) -> None:
        if strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            children = [ChildSpec("w", start=self.lab.worker(), restart=restarts[0])]
            self.model = OtpModel(strategy, intensity, period, template=restarts[0])
        else:
            children = [
                ChildSpec(name, start=self.lab.worker(), restart=restart)
                for name, restart in zip(IDS, restarts, strict=False)
            ]
            self.model = OtpModel(strategy, intensity, period)
            for spec in children:
                self.m.children.append(ModelChild(spec.id, spec.restart))
                self.m.log.append(f"start:{spec.id}")
        flags = SupervisorSpec(children, strategy=strategy, intensity=intensity, period=period)
        self.sup = Supervisor(flags, name="m", clock=self.clock, rng=random.Random(0))
        self.harness = Harness(self.sup)
        self.portal.start_task_soon(self.harness.run)
        self.call(self.sup.started)
        self.check()

    # -- things that happen to children

    def running(self) -> list[str]:
        return [c.name for c in self.m.children if c.running]

    @precondition(lambda self: self.alive and self.running())
    @rule(data=st.data())
    def child_crashes(self, data: st.DataObject) -> None:
        self.end_child(data.draw(st.sampled_from(self.running())), "crash")

    @precondition(lambda self: self.alive and self.running())
    @rule(data=st.data(), how=st.sampled_from(["exit", "shutdown"]))
    def child_exits(self, data: st.DataObject, how: str) -> None:
        self.end_child(data.draw(st.sampled_from(self.running())), how)

    def end_child(self, name: str, how: str) -> None:
        child = self.m.find(name)
        assert child is not None
        self.m.exit(child, how)

        async def end() -> None:
            worker = self.lab.current(name)
            getattr(worker, how)()
            try:
                await settle_exit(self.sup, worker)
            except SupervisorNotRunning:
                await self.harness.ended.wait()
            await settle_restarts(self.sup)  # failed restarts are retried as messages

        self.call(end)
        self.check()

    @rule(data=st.data(), times=st.integers(1, 3))
    def next_starts_fail(self, data: st.DataObject, times: int) -> None:
        names = [c.name for c in self.m.children]
        names += [f"w-{self.m.serial + 1}"] if self.m.simple else IDS
        name = data.draw(st.sampled_from(names))
        self.m.failures[name] = times
        self.lab.fail_starts(name, times)

    @rule(data=st.data(), times=st.integers(1, 2))
    def next_starts_decline(self, data: st.DataObject, times: int) -> None:
        names = [c.name for c in self.m.children]
        names += [f"w-{self.m.serial + 1}"] if self.m.simple else IDS
        name = data.draw(st.sampled_from(names))
        self.m.ignores[name] = times
        self.lab.ignore_starts(name, times)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 6.0]))
    def advance_clock(self, seconds: float) -> None:
        if self.model is None:
            return
        self.m.now += seconds
        self.call(self.clock.advance, seconds)
        self.check()

    # -- runtime calls

    def expect(
        self, error: type[SupervisorError] | None, fn: Callable[..., Awaitable[Any]], *args: Any
    ) -> Any:
        async def attempt() -> tuple[type[BaseException] | None, Any]:
            try:
                return None, await fn(*args)
            except SupervisorError as exc:
                return type(exc), None

        got, result = self.call(attempt)
        assert got is error, f"{fn.__name__}{args}: expected {error}, got {got}"
        return result

    def any_name(self) -> st.SearchStrategy[str]:
        return st.sampled_from([*IDS, *(c.name for c in self.m.children)])

    @rule(data=st.data())
    def terminate_child(self, data: st.DataObject) -> None:
        if self.m.simple:
            dynamic = [c.name for c in self.m.children]
            if data.draw(st.booleans(), label="by id") or not dynamic:
                error = self.m.terminate_child("w", by_id=True)
                self.expect(error, self.sup.terminate_child, "w")
            else:
                name = data.draw(st.sampled_from(dynamic))
                error = self.m.terminate_child(name, by_id=False)
                self.expect(error, self.sup.terminate_child, self.handles[name])
        else:
            name = data.draw(self.any_name())
            self.expect(self.m.terminate_child(name, by_id=True), self.sup.terminate_child, name)
        self.check()

    @rule(data=st.data())
    def restart_child(self, data: st.DataObject) -> None:
        name = data.draw(self.any_name())
        self.expect(self.m.restart_child(name), self.sup.restart_child, name)
        self.check()

    @rule(data=st.data())
    def delete_child(self, data: st.DataObject) -> None:
        name = data.draw(self.any_name())
        self.expect(self.m.delete_child(name), self.sup.delete_child, name)
        self.check()

    @rule(data=st.data(), restart=st.sampled_from(Restart))
    def start_child(self, data: st.DataObject, restart: Restart) -> None:
        if self.m.simple:
            name, error = self.m.start_dynamic()
            handle = self.expect(error, self.sup.start_child, name)
            if error is None:
                self.handles[name] = handle
        else:
            name = data.draw(self.any_name())
            spec = ChildSpec(name, start=self.lab.worker(), restart=restart)
            self.expect(self.m.start_child(name, restart), self.sup.start_child, spec)
        self.check()

    # -- the comparison

    async def _observe(self) -> tuple[list[tuple[str | None, ChildStatus]], ChildCounts] | None:
        try:
            records = await self.sup.which_children()
            counts = await self.sup.count_children()
        except SupervisorNotRunning:
            await self.harness.ended.wait()
            return None
        return [(r.id, r.status) for r in records], counts

    async def _stop(self) -> None:
        self.sup.request_stop()
        await self.harness.ended.wait()

    def live_workers(self) -> set[str]:
        return {
            name
            for name, workers in self.lab.instances.items()
            if workers and not workers[-1].done.is_set()
        }

    def normal_order(self, log: list[str]) -> list[str]:
        """``log`` with each run of stops sorted under simple_one_for_one (stopped in parallel)."""
        if not self.m.simple:
            return log
        out: list[str] = []
        run: list[str] = []
        for entry in [*log, ""]:
            if entry.startswith("stop:"):
                run.append(entry)
                continue
            out += sorted(run)
            run = []
            if entry:
                out.append(entry)
        return out

    def check(self) -> None:
        event(f"{self.m.strategy.value}: {len(self.m.children)} children, gave up {self.m.gave_up}")
        observed = self.call(self._observe)
        assert self.normal_order(self.lab.take_log()) == self.normal_order(self.m.log)
        self.m.log = []
        if self.m.gave_up:
            assert observed is None
            assert isinstance(self.harness.error, RestartIntensityExceeded)
        else:
            assert observed is not None, f"supervisor ended: {self.harness.error!r}"
            records, counts = observed
            assert records == self.m.records()
            assert counts == self.m.counts()
        assert self.live_workers() == set(self.running())


SupervisorAgainstModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, derandomize=True
)
test_supervisor_against_otp_model = SupervisorAgainstModel.TestCase
