"""OTP's ``ignore`` start result and OTP 24's auto-shutdown (``significant`` children).

Re-expressed from ``supervisor_SUITE.erl`` (``sup_start_ignore_child``,
``sup_start_ignore_temporary_child``, ``simple_one_for_one_restart_ignore``,
the ``auto_shutdown`` and ``significant`` cases) against the pure kernel.
"""

from __future__ import annotations

import random

import anyio
import pytest
from toy_workers import Harness, Lab, settle_exit, supervising

from diaspora.errors import ConfigError
from diaspora.events import Exited, Ignored, SelfShutdown
from diaspora.supervision import (
    AutoShutdown,
    ChildCounts,
    ChildSpec,
    ChildStatus,
    ManualClock,
    Restart,
    Strategy,
    Supervisor,
    SupervisorSpec,
)
from diaspora.workflow import parse_config

pytestmark = pytest.mark.anyio

ANY = AutoShutdown.ANY_SIGNIFICANT
ALL = AutoShutdown.ALL_SIGNIFICANT


@pytest.fixture
def lab() -> Lab:
    return Lab()


def supervisor(
    lab: Lab,
    children: list[ChildSpec],
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    *,
    intensity: int = 2,
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
) -> Supervisor:
    spec = SupervisorSpec(
        children,
        strategy=strategy,
        intensity=intensity,
        period=3600.0,
        auto_shutdown=auto_shutdown,
    )
    return Supervisor(spec, name="sup", clock=ManualClock(), on_event=lab, rng=random.Random(0))


def child(lab: Lab, id: str, restart: Restart = Restart.PERMANENT, **kw: bool) -> ChildSpec:
    return ChildSpec(id, lab.worker(), restart=restart, **kw)


async def records(sup: Supervisor) -> list[tuple[str | None, object, ChildStatus]]:
    return [(r.id, r.runnable, r.status) for r in await sup.which_children()]


# --- ignore ---------------------------------------------------------------------------------


async def test_sup_start_ignore_child(lab: Lab) -> None:
    sup = supervisor(lab, [])
    async with supervising(sup):
        lab.ignore_starts("child1")
        assert await sup.start_child(child(lab, "child1")) is None
        runnable = await sup.start_child(child(lab, "child2"))
        assert await records(sup) == [
            ("child1", None, ChildStatus.UNDEFINED),
            ("child2", runnable, ChildStatus.RUNNING),
        ]
        assert await sup.count_children() == ChildCounts(
            specs=2, active=1, supervisors=0, workers=2
        )
        assert [(e.child, e.removed) for e in lab.of(Ignored)] == [("child1", False)]
        lab.ignores.clear()
        assert await sup.restart_child("child1") is lab.current("child1")  # the spec was kept


@pytest.mark.parametrize("in_run", [False, True], ids=["start returns IGNORE", "run raises"])
async def test_an_initial_child_that_declines_is_kept_unless_temporary(
    lab: Lab, in_run: bool
) -> None:
    lab.ignore_starts("kept", in_run=in_run)
    lab.ignore_starts("gone", in_run=in_run)
    children = [child(lab, "kept"), child(lab, "gone", Restart.TEMPORARY), child(lab, "c")]
    sup = supervisor(lab, children)
    async with supervising(sup):
        assert lab.take_log() == ["ignore:kept", "ignore:gone", "start:c"]
        assert [(r[0], r[2]) for r in await records(sup)] == [
            ("kept", ChildStatus.UNDEFINED),
            ("c", ChildStatus.RUNNING),
        ]
        assert await sup.restart_child("kept") is None  # declines again: still not running
        assert [(e.child, e.removed) for e in lab.of(Ignored)] == [
            ("kept", False),
            ("gone", True),
            ("kept", False),
        ]


async def test_a_temporary_child_that_declines_start_child_is_not_kept(lab: Lab) -> None:
    sup = supervisor(lab, [])
    async with supervising(sup):
        lab.ignore_starts("t", in_run=True)
        assert await sup.start_child(child(lab, "t", Restart.TEMPORARY)) is None
        assert await sup.which_children() == []


async def test_a_declined_restart_is_not_restarted_and_does_not_count(lab: Lab) -> None:
    # intensity 1: the crash's restart is the one allowed; had declining counted as a
    # failed start (retried and counted) the supervisor would give up
    sup = supervisor(lab, [child(lab, "a"), child(lab, "b")], intensity=1)
    async with supervising(sup) as run:
        lab.take_log()
        lab.ignore_starts("a", 1)
        victim = lab.current("a")
        victim.crash()
        await settle_exit(sup, victim)
        for _ in range(3):
            assert [(r[0], r[2]) for r in await records(sup)] == [
                ("a", ChildStatus.UNDEFINED),
                ("b", ChildStatus.RUNNING),
            ]
        assert lab.take_log() == ["crash:a", "ignore:a"]
        assert run.error is None


async def test_simple_one_for_one_start_child_that_declines_adds_nothing(lab: Lab) -> None:
    sup = supervisor(lab, [child(lab, "w")], Strategy.SIMPLE_ONE_FOR_ONE)
    async with supervising(sup):
        lab.ignore_starts("w-1")
        assert await sup.start_child() is None
        assert await sup.which_children() == []
        assert await sup.count_children() == ChildCounts(
            specs=1, active=0, supervisors=0, workers=0
        )


@pytest.mark.parametrize("restart", [Restart.TRANSIENT, Restart.PERMANENT])
async def test_simple_one_for_one_restart_ignore(lab: Lab, restart: Restart) -> None:
    sup = supervisor(lab, [child(lab, "w", restart)], Strategy.SIMPLE_ONE_FOR_ONE, intensity=10)
    async with supervising(sup):
        await sup.start_child()
        for _ in range(2):  # killed twice, restarted twice
            victim = lab.current("w-1")
            victim.crash()
            await settle_exit(sup, victim)
            assert [r[2] for r in await records(sup)] == [ChildStatus.RUNNING]
        lab.ignore_starts("w-1")
        victim = lab.current("w-1")
        victim.crash()
        await settle_exit(sup, victim)  # the third restart declines: the child is gone
        assert await sup.which_children() == []
        assert lab.starts("w-1") == 3


# --- significant children: validation (supervisor.erl's validSignificant) ---------------------


def test_significant_requires_auto_shutdown_first_then_a_non_permanent_child(lab: Lab) -> None:
    with pytest.raises(ConfigError, match=r"^supervisor\.children\[0\]\.significant: .*'never'"):
        SupervisorSpec([child(lab, "a", Restart.TRANSIENT, significant=True)])
    # both wrong: OTP reports the auto_shutdown flag first
    with pytest.raises(ConfigError, match="'never'"):
        SupervisorSpec([child(lab, "a", significant=True)])
    with pytest.raises(ConfigError, match=r"^supervisor\.children\[1\]\.significant: .*permanent"):
        SupervisorSpec([child(lab, "a"), child(lab, "b", significant=True)], auto_shutdown=ANY)
    for restart in (Restart.TRANSIENT, Restart.TEMPORARY):
        SupervisorSpec([child(lab, "a", restart, significant=True)], auto_shutdown=ALL)
    with pytest.raises(ConfigError, match="significant: 'yes' is not a boolean"):
        ChildSpec("a", lab.worker(), significant="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="auto_shutdown: 'any' is not an AutoShutdown"):
        SupervisorSpec(auto_shutdown="any")  # type: ignore[arg-type]


async def test_start_child_refuses_a_significant_child_the_flags_do_not_allow(lab: Lab) -> None:
    sup = supervisor(lab, [])
    async with supervising(sup):
        with pytest.raises(ConfigError, match=r"start_child: significant: .*'never'"):
            await sup.start_child(child(lab, "a", Restart.TRANSIENT, significant=True))
        assert await sup.which_children() == []
        assert lab.log == []


# --- significant children: behaviour (supervisor.erl's do_auto_shutdown) -------------------


async def run_until_it_stops(sup: Supervisor, act: object) -> Harness:
    run = Harness(sup)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(run.run)
            assert callable(act)
            await act()
            await run.wait_ended()
    return run


@pytest.mark.parametrize("how", ["exit", "shutdown"])
async def test_any_significant_transient_child_ending_normally_stops_the_supervisor(
    lab: Lab, how: str
) -> None:
    children = [child(lab, "a"), child(lab, "s", Restart.TRANSIENT, significant=True)]
    sup = supervisor(lab, children, auto_shutdown=ANY)

    async def act() -> None:
        getattr(lab.current("s"), how)()

    run = await run_until_it_stops(sup, act)
    assert run.error is None  # a normal exit
    assert lab.log == ["start:a", "start:s", f"{how}:s", "stop:a"]
    assert [(e.child, e.policy) for e in lab.of(SelfShutdown)] == [("s", "any_significant")]


async def test_a_significant_transient_child_that_crashes_is_restarted(lab: Lab) -> None:
    children = [child(lab, "a"), child(lab, "s", Restart.TRANSIENT, significant=True)]
    sup = supervisor(lab, children, auto_shutdown=ANY)
    async with supervising(sup) as run:
        victim = lab.current("s")
        victim.crash()
        await settle_exit(sup, victim)
        assert [r[2] for r in await records(sup)] == [ChildStatus.RUNNING] * 2
    assert run.error is None
    assert lab.of(SelfShutdown) == []


async def test_a_significant_temporary_child_stops_the_supervisor_even_when_it_crashes(
    lab: Lab,
) -> None:
    children = [child(lab, "a"), child(lab, "t", Restart.TEMPORARY, significant=True)]
    sup = supervisor(lab, children, auto_shutdown=ANY)

    async def act() -> None:
        lab.current("t").crash()

    run = await run_until_it_stops(sup, act)
    assert run.error is None
    assert lab.log == ["start:a", "start:t", "crash:t", "stop:a"]


async def test_all_significant_waits_for_the_last_significant_child(lab: Lab) -> None:
    children = [
        child(lab, "a"),
        child(lab, "s1", Restart.TRANSIENT, significant=True),
        child(lab, "s2", Restart.TEMPORARY, significant=True),
        child(lab, "other", Restart.TRANSIENT),
    ]
    sup = supervisor(lab, children, auto_shutdown=ALL)

    async def act() -> None:
        for name in ("other", "s1"):  # a non-significant one, then the first significant one
            victim = lab.current(name)
            victim.exit()
            await settle_exit(sup, victim)
        assert [r[0] for r in await records(sup)] == ["a", "s1", "s2", "other"]
        lab.current("s2").exit()

    run = await run_until_it_stops(sup, act)
    assert run.error is None
    assert lab.log[-4:] == ["exit:other", "exit:s1", "exit:s2", "stop:a"]
    assert [e.child for e in lab.of(SelfShutdown)] == ["s2"]


async def test_children_stopped_by_the_supervisor_never_trigger_auto_shutdown(lab: Lab) -> None:
    children = [child(lab, "s", Restart.TRANSIENT, significant=True), child(lab, "b")]
    sup = supervisor(lab, children, Strategy.ONE_FOR_ALL, auto_shutdown=ANY)
    async with supervising(sup) as run:
        await sup.terminate_child("s")
        await sup.restart_child("s")
        victim = lab.current("b")
        victim.crash()  # one_for_all stops s too: not an exit of its own
        await settle_exit(sup, victim)
        assert [r[2] for r in await records(sup)] == [ChildStatus.RUNNING] * 2
    assert run.error is None
    assert lab.of(SelfShutdown) == []


async def test_simple_one_for_one_all_significant_stops_when_no_child_is_left(lab: Lab) -> None:
    template = child(lab, "w", Restart.TRANSIENT, significant=True)
    sup = supervisor(lab, [template], Strategy.SIMPLE_ONE_FOR_ONE, auto_shutdown=ALL)

    async def act() -> None:
        await sup.start_child()
        await sup.start_child()
        first = lab.current("w-1")
        first.exit()
        await settle_exit(sup, first)
        assert len(await sup.which_children()) == 1
        lab.current("w-2").exit()

    run = await run_until_it_stops(sup, act)
    assert run.error is None
    assert [e.child for e in lab.of(SelfShutdown)] == ["w-2"]


async def test_a_nested_supervisor_that_shuts_itself_down_is_a_normal_exit(lab: Lab) -> None:
    inner = SupervisorSpec(
        [child(lab, "s", Restart.TRANSIENT, significant=True)], auto_shutdown=ANY
    )
    sup = supervisor(lab, [ChildSpec("inner", inner, restart=Restart.TRANSIENT), child(lab, "a")])
    async with supervising(sup) as run:
        lab.current("s").exit()
        await lab.wait_event(Exited, supervisor="sup", child="inner")
        assert lab.of(Exited)[-1].normal  # a transient parent does not restart it
        assert [(r[0], r[2]) for r in await records(sup)] == [
            ("inner", ChildStatus.UNDEFINED),
            ("a", ChildStatus.RUNNING),
        ]
    assert run.error is None
    assert [(e.name, e.child) for e in lab.of(SelfShutdown)] == [("sup.inner", "s")]


# --- the workflow TOML ------------------------------------------------------------------------

ACTOR = 'actor = "actors.examples:RunningSum"\n'


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))


def test_a_config_file_sets_auto_shutdown_and_significant(examples: None) -> None:
    config = parse_config(
        '[supervisor]\nauto_shutdown = "all_significant"\n'
        '[[supervisor.children]]\nid = "job"\nrestart = "transient"\nsignificant = true\n'
        + ACTOR
        + '[[supervisor.children]]\nid = "node"\nrestart = "temporary"\nsignificant = true\n'
        "process = true\n" + ACTOR,
        source="demo.toml",
    )
    assert config.spec.auto_shutdown is ALL
    assert [c.significant for c in config.spec.children] == [True, True]


BAD = [
    (
        '[supervisor]\nauto_shutdown = "sometimes"\n',
        "demo.toml: supervisor.auto_shutdown: 'sometimes' is not one of never, "
        "any_significant, all_significant",
    ),
    (
        '[supervisor]\n[[supervisor.children]]\nid = "job"\nrestart = "transient"\n'
        "significant = true\n" + ACTOR,
        "demo.toml: supervisor.children[0].significant: child 'job' is significant but the "
        "supervisor's auto_shutdown is 'never'",
    ),
    (
        '[supervisor]\nauto_shutdown = "any_significant"\n[[supervisor.children]]\nid = "job"\n'
        "significant = true\n" + ACTOR,
        "demo.toml: supervisor.children[0].significant: child 'job' is significant but permanent",
    ),
    (
        '[supervisor]\n[[supervisor.children]]\nid = "sub"\nauto_shutdown = "any_significant"\n'
        '[[supervisor.children.children]]\nid = "job"\nsignificant = true\n' + ACTOR,
        "demo.toml: supervisor.children[0].children[0].significant: child 'job' is significant "
        "but permanent",
    ),
    (
        '[supervisor]\n[[supervisor.children]]\nid = "job"\nsignificant = "yes"\n' + ACTOR,
        "demo.toml: supervisor.children[0].significant: 'yes' is a string, expected true or false",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_config_files_auto_shutdown_errors_name_the_file_and_field(
    examples: None, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="demo.toml")
    assert str(caught.value).startswith(message)
