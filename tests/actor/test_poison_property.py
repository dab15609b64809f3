"""Property: poison messages never wedge a supervised actor, in either ``on_poison`` mode.

Any interleaving of good, flaky (raise once, then fine) and poison inputs, with the
actor crashed (an injected fault: its supervisor restarts it) and the whole tree
killed (cancelled, no final checkpoint, then started again) at random points: every
good input's output appears exactly once with the right running total, every poison
input is dead-lettered exactly once (one dead letter, one ``dead_letter`` event), and
the supervisor never gives up. Each example runs against its own nats-server.

A few examples by default; ``--soak`` runs ``$DIASPORA_POISON_SOAK_EXAMPLES`` (200).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diaspora import Actor, Message
from diaspora.events import DeadLettered, MemorySink
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.supervision import ChildSpec, Supervisor, SupervisorSpec
from diaspora.testing import read_stream, wait_until
from diaspora.testing._faults import FaultInjection
from diaspora.workflow import ActorStart

EXAMPLES = 4
SOAK_EXAMPLES = int(os.environ.get("DIASPORA_POISON_SOAK_EXAMPLES", "200"))
MAX_ATTEMPTS = 3

Step = Literal["good", "flaky", "poison", "crash", "kill"]


@dataclass
class Lab:
    """What the test shares with every actor instance: which flaky inputs already failed."""

    failed_once: set[int] = field(default_factory=set)


class Summer(Actor):
    """A running sum of ``x``; ``poison`` inputs always raise, ``flaky`` ones raise once."""

    inputs = ("prop.in",)
    max_attempts = MAX_ATTEMPTS
    checkpoint_every = 2
    checkpoint_interval = 0.2

    def __init__(self, lab: Lab) -> None:
        self.lab, self.total = lab, 0

    async def handle(self, msg: Message) -> None:
        kind = msg.data["kind"]
        if kind == "poison":
            raise ValueError(f"poison at {msg.seq}")
        if kind == "flaky" and msg.seq not in self.lab.failed_once:
            self.lab.failed_once.add(msg.seq)
            raise ValueError(f"flaky at {msg.seq}")
        self.total += msg.data["x"]
        await self.emit("prop.out", {"seq": msg.seq, "total": self.total})

    def snapshot(self) -> int:
        return self.total

    def restore(self, state: int) -> None:
        self.total = state


class CrashingSummer(Summer):
    on_poison = "crash"


steps = st.lists(
    st.sampled_from(["good", "good", "flaky", "poison", "poison", "crash", "kill"]),
    min_size=1,
    max_size=10,
)


async def scenario(mode: str, plan: list[Step]) -> None:
    inputs = [s for s in plan if s in ("good", "flaky", "poison")]
    poison_count = inputs.count("poison")
    faults_count = plan.count("crash")
    lab, faults, sink = Lab(), FaultInjection(), MemorySink()
    actor = CrashingSummer if mode == "crash" else Summer
    # retry mode: only injected crashes restart the actor; crash mode: each poison input
    # costs max_attempts restarts and each flaky one a restart
    allowance = faults_count + 1
    if mode == "crash":
        allowance += MAX_ATTEMPTS * poison_count + inputs.count("flaky")
    async with EmbeddedServer() as server, Fabric(server.url) as fabric:
        await fabric.ensure_stream("prop.in")

        def make() -> Supervisor:
            bound = ActorStart(actor, fabric, {"lab": lab}, stages=(lambda: faults,))
            spec = SupervisorSpec([ChildSpec("sum", bound)], intensity=allowance, period=3600)
            return Supervisor(spec, name="root", on_event=sink)

        tree = make()
        expected: list[dict[str, int]] = []
        total = 0
        async with anyio.create_task_group() as outer:
            scope = anyio.CancelScope()

            async def run_tree(
                supervisor: Supervisor, cancel: anyio.CancelScope, *, task_status: Any
            ) -> None:
                with cancel:
                    await supervisor.run(task_status=task_status)  # giving up raises here

            await outer.start(run_tree, tree, scope)
            for seq_index, step in enumerate(plan):
                if step == "crash":
                    faults.inject("crash")
                elif step == "kill":  # no final checkpoint: what a SIGKILL leaves behind
                    scope.cancel()
                    await anyio.lowlevel.checkpoint()
                    tree, scope = make(), anyio.CancelScope()
                    await outer.start(run_tree, tree, scope)
                else:
                    x = seq_index + 1
                    ack = await fabric.publish("prop.in", {"kind": step, "x": x})
                    if step != "poison":
                        total += x
                        expected.append({"seq": ack.seq, "total": total})
                await anyio.sleep(0.05 * (seq_index % 3))

            async def settled() -> bool:
                out = await read_stream(fabric, "prop.out", missing_ok=True)
                return len(out) >= len(expected) and len(sink.of(DeadLettered)) >= poison_count

            await wait_until(settled, timeout=60, what="every output and dead letter")
            await anyio.sleep(0.3)  # room for a duplicate to show
            out = [m.data for m in await read_stream(fabric, "prop.out", missing_ok=True)]
            dead = await read_stream(
                fabric, "diaspora.dlq.root_sum", stream="DIASPORA_DLQ", missing_ok=True
            )
            poison_seqs = [i + 1 for i, kind in enumerate(inputs) if kind == "poison"]
            assert out == expected
            assert sorted(m.data["seq"] for m in dead) == poison_seqs
            assert sorted(e.seq for e in sink.of(DeadLettered)) == poison_seqs
            scope.cancel()


def check(mode: str, plan: list[Step]) -> None:
    anyio.run(scenario, mode, plan)


PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("mode", ["retry", "crash"])
@PROPERTY
@given(plan=steps)
def test_any_interleaving_of_good_and_poison_inputs_with_restarts(
    mode: str, plan: list[Step]
) -> None:
    check(mode, plan)


@pytest.mark.soak
@pytest.mark.parametrize("mode", ["retry", "crash"])
@settings(PROPERTY, max_examples=SOAK_EXAMPLES)
@given(plan=st.lists(st.sampled_from(["good", "flaky", "poison", "crash", "kill"]), max_size=30))
def test_soak_any_interleaving_of_good_and_poison_inputs_with_restarts(
    mode: str, plan: list[Step]
) -> None:
    check(mode, plan)
