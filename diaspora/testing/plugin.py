"""pytest plugin: real nats-server fixtures for async tests (anyio, asyncio backend).

Enable it in ``conftest.py`` with ``pytest_plugins = ["diaspora.testing.plugin"]``.

Fixtures:

- ``nats_server`` — a fresh :class:`~diaspora.fabric.EmbeddedServer` per test
  (free loopback port, temporary store), closed afterwards.
- ``nats_cluster`` — a 3-server :class:`~diaspora.fabric.EmbeddedCluster`.
- ``fabric`` — a :class:`~diaspora.fabric.Fabric` connected to ``nats_server``.
- ``link_proxy`` — a :class:`~diaspora.testing.LinkProxy` in front of ``nats_server``:
  connect to ``link_proxy.url`` to put link faults between client and server.
- ``workflow`` — starts supervision trees from TOML files, in this process,
  against ``nats_server`` (or ``url=link_proxy.url``): ``async with
  workflow("supervisors/x.toml") as wf:`` runs the tree of
  :class:`~diaspora.testing.Workflow` until the block ends, then stops it; the
  fixture fails the test if any process the tree started outlived it.
- ``injector`` — an :class:`~diaspora.testing.Injector` bound to ``fabric``,
  ``nats_server`` and ``link_proxy``: crash, hang, freeze or kill actors,
  kill/restart/pause the server, degrade or cut the link; it heals everything
  at teardown.
- ``anyio_backend`` — ``"asyncio"`` (nats-py runs on asyncio only).

Example tests::

    import pytest

    @pytest.mark.anyio
    async def test_roundtrip(fabric):
        await fabric.ensure_stream("numbers")
        ack = await fabric.publish("numbers", {"x": 1})
        assert ack.seq == 1

    @pytest.mark.anyio
    async def test_sum_survives_kill_9(fabric, workflow, injector):
        async with workflow("supervisors/running_sum.toml") as wf:
            injector.pids = wf                      # find pids in the running tree
            await injector.kill_process("root.sum")
            await wf.wait_running()

Hypothesis state machines, whose examples share one server and one running
tree, use a :class:`~diaspora.testing._rig.FaultRig` and
:class:`~diaspora.testing.machine.WorkflowMachine` instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from diaspora.fabric import EmbeddedCluster, EmbeddedServer, Fabric, LinkProxy
from diaspora.testing._injectors import Injector
from diaspora.testing._workflow import Workflow
from diaspora.workflow import TreeConfig


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def nats_server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer() as server:
        yield server


@pytest.fixture
async def nats_cluster() -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(3) as cluster:
        yield cluster


@pytest.fixture
async def fabric(nats_server: EmbeddedServer) -> AsyncIterator[Fabric]:
    async with Fabric(nats_server.url, name="test") as connected:
        yield connected


@pytest.fixture
async def link_proxy(nats_server: EmbeddedServer) -> AsyncIterator[LinkProxy]:
    async with LinkProxy(nats_server.port) as proxy:
        yield proxy


class WorkflowRunner:
    """What the ``workflow`` fixture gives: call it with a config file to get a
    :class:`~diaspora.testing.Workflow` to run with ``async with``.

    ``url`` defaults to the test's server; the observer fabric (events, pids)
    is the test's own ``fabric``. Keyword ``options`` go to ``Workflow``.
    """

    def __init__(self, url: str, observer: Fabric) -> None:
        self.url = url
        self.observer = observer
        self.started: list[Workflow] = []

    def __call__(
        self,
        config: str | os.PathLike[str] | TreeConfig,
        *,
        url: str | None = None,
        **options: Any,
    ) -> Workflow:
        options.setdefault("observer", self.observer)
        workflow = Workflow(config, url or self.url, **options)
        self.started.append(workflow)
        return workflow

    def check(self) -> None:
        """Fail if a workflow is still running or left processes behind."""
        for workflow in self.started:
            if workflow.entered:
                pytest.fail(
                    f"workflow {workflow.describe()} still runs at teardown: use it as "
                    "`async with workflow(...) as wf:` inside the test"
                )
            workflow.assert_no_orphans()


@pytest.fixture
async def workflow(nats_server: EmbeddedServer, fabric: Fabric) -> AsyncIterator[WorkflowRunner]:
    runner = WorkflowRunner(nats_server.url, fabric)
    yield runner
    runner.check()


@pytest.fixture
async def injector(
    fabric: Fabric, nats_server: EmbeddedServer, link_proxy: LinkProxy
) -> AsyncIterator[Injector]:
    async with Injector(fabric, server=nats_server, proxy=link_proxy) as bound:
        yield bound
