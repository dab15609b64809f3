"""Live migration: downtime p50/p99 and bytes sent, pre-copy against stop-and-copy.

An actor holds ``size`` MiB of state in a :class:`~diaspora.compute.MigratableState`
(keys of 1 MiB; 64 KiB for the 1 MiB state) and, under steady traffic
(``RATE`` inputs/s), writes 8 KiB into one key per input (zipf-skewed keys,
``mutable``). Two runtimes on their own connections to one server play the
workers ``a`` and ``b``; the actor migrates back and forth ``n`` times with
pre-copy, then ``n`` times with stop-and-copy (the same code path with the
rounds disabled), in the same run. Rows per state size:

- downtime p50 and p99 (pause → switch answered, on the source's clock),
  pre-copy, each with the stop-and-copy figure as its baseline;
- bytes sent per migration, pre-copy against the state size (stop-and-copy
  sends exactly that);
- pre-copy rounds per migration.

``--quick``: 1 and 64 MiB, 3 migrations per mode; else 1, 64 and 256 MiB, 10.
"""

from __future__ import annotations

import contextlib
import statistics
from typing import Any

import anyio
import numpy as np

from bench.report import Report, Row
from diaspora import Actor, ActorRuntime, Message
from diaspora.actor import CheckpointSlot
from diaspora.compute import Migratable, MigratableState, MigrationPolicy, migrate
from diaspora.compute._migrate import shadow_subject
from diaspora.errors import ControlError, FencedOut
from diaspora.events import LogSink, Migrated
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric._control import control_request
from diaspora.testing import wait_until

GROUP = "migrate"
IN = "bench.migrate.in"
RATE = 200.0
_MiB = 1 << 20


class Holder(Actor):
    """``size_mib`` MiB of state; each input writes 8 KiB into one (zipf-chosen) key."""

    inputs = (IN,)
    checkpoint_interval = 3600.0  # the migration is measured, not the checkpoints

    def __init__(self, size_mib: int = 1) -> None:
        key_bytes = _MiB if size_mib >= 64 else 64 * 1024
        keys = max(1, size_mib * _MiB // key_bytes)
        self.state = MigratableState(
            {f"k{i}": np.zeros(key_bytes // 8, dtype=np.float64) for i in range(keys)}
        )

    async def handle(self, msg: Message) -> None:
        key = f"k{int(msg.data['k']) % len(self.state)}"
        size = dict.__getitem__(self.state, key).shape[0]
        at = int(msg.data["at"]) % max(1, size - 1024)
        self.state.mutable(key, at, at + 1024)[:] += 1.0  # 8 KiB: one or two blocks marked

    def snapshot(self) -> Any:
        return dict(self.state)

    def restore(self, state: Any) -> None:
        self.state = MigratableState(state)


class _Worker:
    def __init__(self, url: str, worker: str, size: int, home: bool) -> None:
        self.url, self.worker, self.size, self.home = url, worker, size, home
        self.runtime: ActorRuntime | None = None

    async def run(self) -> None:
        async with Fabric(self.url, name=f"bench-{self.worker}") as fabric:
            while True:
                self.runtime = ActorRuntime(
                    Holder,
                    fabric,
                    id=f"holder{self.size}",
                    args={"size_mib": self.size},
                    stages=[Migratable(self.worker, home=self.home)],
                    events=LogSink(),
                )
                with contextlib.suppress(FencedOut):
                    await self.runtime.run()

    @property
    def owns(self) -> bool:
        rt = self.runtime
        return rt is not None and rt.running and rt.actor is not None and rt.stats.handled > 0


async def _traffic(fabric: Fabric, stop: anyio.Event) -> None:
    rng = np.random.default_rng(14)
    while not stop.is_set():
        await fabric.publish(IN, {"k": int(rng.zipf(1.2)), "at": int(rng.integers(1 << 30))})
        await anyio.sleep(1 / RATE)


async def _size(report: Report, url: str, size: int, n: int) -> None:
    async with Fabric(url, name="bench-driver") as fabric:
        await fabric.ensure_stream(IN)
        workers = {"a": _Worker(url, "a", size, True), "b": _Worker(url, "b", size, False)}
        results: dict[bool, list[Migrated]] = {True: [], False: []}
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(workers["a"].run)
            tg.start_soon(workers["b"].run)
            tg.start_soon(_traffic, fabric, stop)
            for precopy in (True, False):
                for _ in range(n):
                    await wait_until(lambda: _placement(fabric, size), timeout=120)
                    source = await _placement(fabric, size)
                    to = "b" if source == "a" else "a"
                    await wait_until(lambda w=workers[source]: w.owns, timeout=120)
                    await wait_until(lambda t=to: _standby_up(fabric, size, t), timeout=120)
                    policy = MigrationPolicy(budget_ms=5.0, precopy=precopy, timeout=60.0)
                    done = await migrate(
                        fabric, f"holder{size}", to=to, policy=policy, timeout=600.0
                    )
                    results[precopy].append(done)
                    await wait_until(lambda w=workers[to]: w.owns, timeout=120)
            stop.set()
            tg.cancel_scope.cancel()
    state = size * _MiB
    for precopy, label in ((True, "pre-copy"), (False, "stop-and-copy")):
        downs = [m.downtime_ms for m in results[precopy]]
        sent = statistics.mean(m.bytes for m in results[precopy])
        rounds = statistics.mean(m.rounds for m in results[precopy])
        print(f"  {size} MiB {label}: downtime ms {[round(d, 1) for d in downs]}, "
              f"MiB sent {sent / _MiB:.1f}, rounds {rounds:.1f}")  # fmt: skip
    pre = [m.downtime_ms for m in results[True]]
    stop_copy = [m.downtime_ms for m in results[False]]
    for name, pick in (("p50", 0.5), ("p99", 0.99)):
        report.add(
            Row(
                GROUP,
                f"downtime {name} {size}MiB pre-copy",
                _quantile(pre, pick),
                "ms",
                baseline=f"stop-and-copy {name}",
                baseline_value=_quantile(stop_copy, pick),
                extra={"migrations": n, "rate": RATE},
            )
        )
    report.add(
        Row(
            GROUP,
            f"MiB sent {size}MiB pre-copy",
            statistics.mean(m.bytes for m in results[True]) / _MiB,
            "MiB",
            baseline="state size (stop-and-copy)",
            baseline_value=statistics.mean(m.bytes for m in results[False]) / _MiB or state,
            extra={"rounds": statistics.mean(m.rounds for m in results[True])},
        )
    )


async def _standby_up(fabric: Fabric, size: int, worker: str) -> bool:
    try:
        await control_request(
            fabric, shadow_subject(f"holder{size}", worker), {"op": "ping"}, timeout=1, nobody=""
        )
    except ControlError:
        return False
    return True


async def _placement(fabric: Fabric, size: int) -> str:
    record = await CheckpointSlot.peek(fabric, f"holder{size}")
    return (record.placement if record is not None else None) or ""


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(report: Report, quick: bool) -> None:
    sizes, n = ((1, 64), 3) if quick else ((1, 64, 256), 10)
    async with EmbeddedServer() as server:
        for size in sizes:
            await _size(report, server.url, size, n)
