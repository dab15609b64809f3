"""A hypothesis state machine over puts, gets, deletes, site kills and restarts, policy changes,
and sites killed in the middle of a write, a re-layout or a repair, checked against a dict.

The manifests are at sites a (first), b and c: killing a leaf kills a manifest site three times
in four, the first one among them. After every example all sites come back and every object
must read back equal to the model, and a scrub must find every fragment its manifest names
intact (a complete layout).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from diaspora.errors import FabricUnavailable, NotStored, StorageError
from diaspora.fabric import Sites
from diaspora.storage import Layout, Policy, Storage
from diaspora.storage._adapt import relayout
from tests.storage.rig import LEAVES, kill, revive, rig

CHUNK = 32 * 1024
LAYOUTS = ["rs:3+1", "rs:2+1", "rep:2"]
SIZES = [0, 1, CHUNK - 1, CHUNK, 2 * CHUNK + 3]
NAMES = st.sampled_from(["n0", "n1", "n2"])


def policy(layout: str) -> Policy:
    return Policy(layout=layout, small=0, chunk_size=CHUNK, lose=1)


class StorageMachine(RuleBasedStateMachine):
    portal: ClassVar[BlockingPortal]
    sites: ClassVar[Sites]
    store: ClassVar[Storage]
    examples: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.prefix = f"e{self.examples}-"
        self.model: dict[str, bytes] = {}
        self.down: set[str] = set()

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return self.portal.call(fn, *args)

    def _revive(self, site: str) -> None:
        self.call(revive, self.sites, site)
        self.store.sites.health[site].down_until = 0.0
        self.down.discard(site)

    @rule(name=NAMES, size=st.sampled_from(SIZES), seed=st.integers(0, 2**16))
    def put(self, name: str, size: int, seed: int) -> None:
        data = random.Random(seed).randbytes(size)
        self.call(self.store.put, self.prefix + name, data)  # one site may be down: placeable
        self.model[self.prefix + name] = data

    @rule(name=NAMES)
    def get(self, name: str) -> None:
        key = self.prefix + name
        if key in self.model:
            assert self.call(self.store.get, key) == self.model[key]
        else:
            with pytest.raises(NotStored):
                self.call(self.store.get, key)

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        self.call(self.store.delete, self.prefix + name)
        self.model.pop(self.prefix + name, None)

    @precondition(lambda self: not self.down)
    @rule(site=st.sampled_from(LEAVES))
    def kill_site(self, site: str) -> None:
        self.call(kill, self.sites, site)
        self.down.add(site)

    @precondition(lambda self: bool(self.down))
    @rule()
    def restart_site(self) -> None:
        self._revive(sorted(self.down)[0])

    @rule(layout=st.sampled_from(LAYOUTS))
    def change_policy(self, layout: str) -> None:
        self.store.policy = policy(layout)
        self.call(self.store.adapt)  # every chunk goes to the new policy's layout

    @precondition(lambda self: not self.down)
    @rule(
        op=st.sampled_from(["put", "relayout", "repair"]),
        site=st.sampled_from(LEAVES),
        name=NAMES,
        delay=st.sampled_from([0.0, 0.005, 0.02]),
        seed=st.integers(0, 2**16),
    )
    def kill_during(self, op: str, site: str, name: str, delay: float, seed: int) -> None:
        key = self.prefix + name
        data = random.Random(seed).randbytes(12 * CHUNK + 5)
        layout = Layout.parse(random.Random(seed).choice(LAYOUTS))

        async def work() -> None:
            if op == "put":
                await self.store.put(key, data)
                self.model[key] = data
            elif op == "relayout" and key in self.model and self.model[key]:
                await relayout(self.store, key, 0, layout)
            elif op == "repair":
                await self.store.repair(move=True)

        async def both() -> None:
            async def guarded() -> None:
                # the operation may fail; what is stored must stay whole
                with contextlib.suppress(StorageError, FabricUnavailable):
                    await work()

            async with anyio.create_task_group() as tg:
                tg.start_soon(guarded)
                await anyio.sleep(delay)
                await kill(self.sites, site)

        self.call(both)
        self.down.add(site)

    def teardown(self) -> None:
        for site in sorted(self.down):
            self._revive(site)
        for key in self.model:  # first, before a read could mend anything
            report = self.call(self.store.repair, key)
            assert report.lost == []
            assert report.rebuilt == 0  # every fragment its manifest names is there, intact
        for key, data in self.model.items():
            assert self.call(self.store.get, key) == data
        for key in list(self.model):
            self.call(self.store.delete, key)


def _run(tmp_path: Path, examples: int, steps: int) -> None:
    with start_blocking_portal() as portal:
        context = portal.wrap_async_context_manager(rig(tmp_path, policy("rs:3+1"), meta="a"))
        with context as (sites, _, store):
            StorageMachine.portal, StorageMachine.sites, StorageMachine.store = portal, sites, store
            run_state_machine_as_test(
                StorageMachine,
                settings=settings(
                    max_examples=examples,
                    stateful_step_count=steps,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )


def test_storage_machine(tmp_path: Path) -> None:
    _run(tmp_path, examples=4, steps=8)


def test_a_site_killed_during_a_write_a_relayout_and_a_repair(tmp_path: Path) -> None:
    """The machine's fault rule run on purpose, each operation at several kill delays."""
    with start_blocking_portal() as portal:
        context = portal.wrap_async_context_manager(rig(tmp_path, policy("rs:3+1"), meta="a"))
        with context as (sites, _, store):
            StorageMachine.portal, StorageMachine.sites, StorageMachine.store = portal, sites, store
            machine = StorageMachine()
            faults = [("put", 0.0), ("put", 0.005), ("relayout", 0.0), ("relayout", 0.01)]
            for step, (op, delay) in enumerate([*faults, ("repair", 0.0), ("put", 0.02)]):
                machine.put("n0", 2 * CHUNK + 3, step)
                machine.kill_during(op, LEAVES[step % len(LEAVES)], "n0", delay, step)
                machine.get("n0")  # one site down: still readable, and equal to the model
                machine.restart_site()
            machine.teardown()


@pytest.mark.soak
def test_storage_machine_soak(tmp_path: Path) -> None:
    _run(tmp_path, examples=40, steps=20)
