"""The virtual infrastructure twin: real servers per site, a shaped proxy on every uplink.

:class:`Twin` runs a :class:`~sims.twinspec.TwinSpec`: one embedded
``nats-server`` per site with its own JetStream domain (``Sites``), a
:class:`~diaspora.fabric.LinkProxy` on every leaf link from a child to its
parent, shaped to the link's latency, jitter and bandwidth (loss lowers the
cap to what TCP keeps, :func:`~sims.twinspec.mathis_rate`), and a
:class:`~sims.linkpredict.LinkPredictor` per uplink. The workflow connects
to ``twin.sites[name].url`` exactly as it would to a real site, so its code
runs unchanged. :meth:`Twin.run_schedule` applies the fault schedule: link
cuts, blackholes, congestion and extra latency (each back to the link's own
shape when it ends), server kills and restarts, process kills (through a
:class:`~diaspora.testing.PidSource`). Every fault is a :class:`FaultRecord`
and a ``LinkFaulted``/``LinkHealed`` event on the site's fabric.

>>> from sims.twinspec import parse_twin
>>> spec = parse_twin('''
... description = "two sites"
... [sites.hpc]
... domain = "hpc"
... [sites.edge]
... domain = "edge"
... parent = "hpc"
... [links.edge]
... latency = 0.02
... ''')
>>> async def main() -> None:
...     async with Twin(spec) as twin:
...         sample = await twin.predictors["edge"].probe()
...         print(sample.up, sample.rtt_s >= 0.04)  # 20 ms each way
>>> anyio.run(main)
True True
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable, Collection
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
import anyio.abc

from diaspora.events import LinkFaulted, LinkHealed
from diaspora.fabric import Fabric, LinkProxy, Sites
from diaspora.log import get_logger
from sims.linkpredict import LinkPredictor
from sims.twinspec import TwinFault, TwinFaultKind, TwinSpec

__all__ = ["FaultRecord", "PidSource", "Twin"]


class PidSource(Protocol):
    """Names the live process of an actor id (``diaspora.testing.PidWatcher`` does)."""

    async def wait_pid(
        self, target: str, *, timeout: float = 30.0, exclude: Collection[int] = ()
    ) -> int: ...


@dataclass(slots=True)
class FaultRecord:
    """One fault the twin applied: seconds from the schedule's start it was planned, applied
    and lifted at, the pid it killed, and the error if it could not be applied."""

    fault: str
    kind: str
    site: str | None
    target: str | None
    planned_s: float
    at_s: float | None = None
    lifted_s: float | None = None
    pid: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Twin:
    """The servers, links and link predictors of ``spec`` for an ``async with`` block.

    ``state_dir`` keeps the sites' stores (default: temporary). ``pids`` finds
    the process of an actor for ``kill_process`` faults (a ``PidWatcher``).
    ``probe_interval`` paces the link predictors (``None``: none run).
    """

    def __init__(
        self,
        spec: TwinSpec,
        *,
        state_dir: str | Path | None = None,
        pids: PidSource | None = None,
        probe_interval: float | None = 1.0,
    ) -> None:
        self.spec = spec
        self.pids = pids
        self.probe_interval = probe_interval
        self.sites = Sites(spec.site_specs(), state_dir=state_dir)
        self.fabrics: dict[str, Fabric] = {}
        self.predictors: dict[str, LinkPredictor] = {}
        self.log: list[FaultRecord] = []
        self.started_at = time.time()
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._log = get_logger(twin=spec.source)

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self.sites)
            for site in self.spec.sites:
                fabric = Fabric(self.sites[site.name].url, name=f"twin-{site.name}")
                self.fabrics[site.name] = await stack.enter_async_context(fabric)
            for name in self.spec.links:
                self._shape(name)
            if self.probe_interval is not None:
                for site in self.spec.sites:
                    if site.parent is None:
                        continue
                    predictor = LinkPredictor(
                        site.name,
                        self.fabrics[site.name],
                        self.fabrics[site.parent],
                        interval=self.probe_interval,
                    )
                    self.predictors[site.name] = await stack.enter_async_context(predictor)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)
            self._stack = stack.pop_all()
        self.started_at = time.time()
        self._log.info("twin_started", sites=[s.name for s in self.spec.sites])
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        self._log.info("twin_stopped", faults=len(self.log))

    # -- links ----------------------------------------------------------------------

    def proxy(self, site: str) -> LinkProxy:
        """The proxy on ``site``'s uplink."""
        proxy = self.sites[site].proxy
        if proxy is None:
            raise KeyError(f"site {site!r} has no uplink proxy in the twin {self.spec.source}")
        return proxy

    def _shape(self, site: str) -> None:
        """Put the link back to its declared latency, jitter and cap."""
        link = self.spec.links[site]
        proxy = self.proxy(site)
        proxy.set_latency(link.latency, link.jitter)
        proxy.set_bandwidth(link.rate)

    # -- the schedule ---------------------------------------------------------------

    async def run_schedule(
        self,
        schedule: tuple[TwinFault, ...] | None = None,
        *,
        on_fault: Callable[[FaultRecord], Awaitable[None]] | None = None,
        origin: float | None = None,
    ) -> list[FaultRecord]:
        """Apply ``schedule`` (default: the twin's) at its times from now; return when every
        fault has been applied and lifted. Records are appended to :attr:`log` as they go;
        their times count from ``origin`` (a time of ``anyio.current_time()``; default now)."""
        faults = self.spec.schedule if schedule is None else schedule
        start = anyio.current_time()
        t0 = start if origin is None else origin
        records = []
        async with anyio.create_task_group() as tg:
            for fault in faults:
                await anyio.sleep_until(start + fault.at)
                record = FaultRecord(
                    fault.describe(),
                    fault.kind.value,
                    fault.site,
                    fault.target,
                    round(start - t0 + fault.at, 3),
                )
                self.log.append(record)
                records.append(record)
                tg.start_soon(self._carry_out, fault, record, t0, on_fault)
        return records

    async def _carry_out(
        self,
        fault: TwinFault,
        record: FaultRecord,
        t0: float,
        on_fault: Callable[[FaultRecord], Awaitable[None]] | None,
    ) -> None:
        def now() -> float:
            return round(anyio.current_time() - t0, 3)

        try:
            lift = await self._apply(fault, record)
            record.at_s = now()
            self._log.warning("twin_fault", fault=record.fault, at_s=record.at_s, pid=record.pid)
            if on_fault is not None:
                await on_fault(record)
            if lift is not None:
                if fault.duration is not None:
                    await anyio.sleep(fault.duration)
                await lift()
                record.lifted_s = now()
                self._log.info("twin_fault_lifted", fault=record.fault, at_s=record.lifted_s)
        except Exception as exc:  # a fault that cannot be applied is reported, not fatal
            record.error = f"{type(exc).__name__}: {exc}"
            self._log.error("twin_fault_failed", fault=record.fault, error=record.error)

    async def _apply(
        self, fault: TwinFault, record: FaultRecord
    ) -> Callable[[], Awaitable[None]] | None:
        """Put ``fault`` in force; return what lifts it (``None``: nothing to lift)."""
        kind = fault.kind
        if kind.layer == "process":
            if self.pids is None:
                raise RuntimeError("kill_process needs the twin's pids= (a PidWatcher)")
            assert fault.target is not None
            record.pid = await self.pids.wait_pid(fault.target, timeout=30.0)
            os.kill(record.pid, signal.SIGKILL)
            return None
        assert fault.site is not None
        site = fault.site
        if kind.layer == "server":
            server = self.sites[site].server
            assert server is not None  # every twin site is embedded
            record.pid = server.pid
            if kind is TwinFaultKind.RESTART_SERVER:
                await server.restart()
                return None
            await server.kill()
            return server.start
        proxy = self.proxy(site)
        link = self.spec.links[site]
        fabric = self.fabrics[site]
        name = kind.value
        if kind is TwinFaultKind.RESET_LINK:
            proxy.reset()
            await self._event(fabric, LinkFaulted(name=site, fault=name))
            return None
        if kind is TwinFaultKind.CUT_LINK:
            proxy.cut()
            undo: Callable[[], None] = proxy.reopen
        elif kind is TwinFaultKind.BLACKHOLE:
            proxy.blackhole()
            undo = proxy.end_blackhole
        elif kind is TwinFaultKind.LATENCY:
            assert fault.seconds is not None
            proxy.set_latency(link.latency + fault.seconds, link.jitter)
            undo = lambda: self._shape(site)  # noqa: E731
        else:
            assert fault.rate is not None
            cap = link.rate
            proxy.set_bandwidth(fault.rate if cap is None else min(cap, fault.rate))
            undo = lambda: self._shape(site)  # noqa: E731
        await self._event(
            fabric,
            LinkFaulted(
                name=site,
                fault=name,
                seconds=fault.seconds,
                rate=fault.rate,
                duration=fault.duration,
            ),
        )

        async def lift() -> None:
            undo()
            await self._event(fabric, LinkHealed(name=site, fault=name, by="timer"))

        return lift

    async def _event(self, fabric: Fabric, event: LinkFaulted | LinkHealed) -> None:
        try:
            await fabric.emit(event)
        except Exception as exc:  # events are best effort: the fault is in force regardless
            self._log.warning("twin_event_not_emitted", kind=event.kind, error=repr(exc))

    def heal(self) -> None:
        """Every uplink back to its declared shape, cuts and blackholes ended."""
        for site in self.spec.links:
            self.proxy(site).heal()
            self._shape(site)

    def report(self) -> dict[str, Any]:
        """What ran: sites and slots, links as declared and as measured, the faults applied."""
        return {
            "twin": self.spec.source,
            "description": self.spec.description,
            "sites": {
                s.name: {"domain": s.domain, "parent": s.parent, "slots": self.spec.slots(s.name)}
                for s in self.spec.sites
            },
            "links": {
                name: {**asdict(link), "cap_bytes_s": link.rate}
                for name, link in self.spec.links.items()
            },
            "predicted": {name: p.summary() for name, p in self.predictors.items()},
            "faults": [r.as_dict() for r in self.log],
        }
