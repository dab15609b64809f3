"""The link control: a service that puts fault orders from the fabric on a site's link proxy.

:class:`LinkControl` listens on ``diaspora.control.link.<site>.fault``, parses
each order (:class:`~diaspora.fabric.LinkFault`), applies it to the site's
:class:`~diaspora.fabric.LinkProxy`, answers ``{"ok": true, ...}`` once the
fault is in force (or ``{"ok": false, "error": ...}`` naming the bad field),
and lifts a lasting fault when its duration is over. Tests, the twin and
operators all use it through :func:`~diaspora.fabric.link_fault`.

Faults of different aspects stack (latency with a bandwidth cap and a cut);
a newer order of the same aspect *replaces* the one in force, timer and all
(``latency 200ms for 5s`` then ``latency 50ms`` leaves 50 ms until healed).
Each lasting fault has one timer; ``heal_link`` cancels them all.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

import anyio
from anyio.abc import TaskGroup

from diaspora.errors import ConfigError, FabricUnavailable
from diaspora.events import EventSink, LinkFaulted, LinkHealed
from diaspora.fabric._connection import Inbound
from diaspora.fabric._fabric import Fabric
from diaspora.fabric._linkorder import LinkFault, LinkFaultKind, link_control_subject
from diaspora.fabric._linkproxy import LinkProxy
from diaspora.log import get_logger

__all__ = ["LinkControl"]

#: The lasting faults, each its own aspect of the link: a newer order of one replaces it.
_LASTING: Final = (
    LinkFaultKind.LATENCY,
    LinkFaultKind.BANDWIDTH,
    LinkFaultKind.BLACKHOLE,
    LinkFaultKind.CUT,
)


@dataclass(slots=True)
class _InForce:
    fault: LinkFault
    lifts_at: float | None  # loop time; None: until healed
    scope: anyio.CancelScope | None = None


class LinkControl:
    """Obeys link fault orders for ``site``'s ``proxy``, received on ``fabric``.

    ``fabric`` must reach its server without going through ``proxy`` (a cut
    would cut the control off its own orders). Events (:class:`LinkFaulted`,
    :class:`LinkHealed`) go to ``events``, by default the fabric. Leaving the
    ``async with`` block heals the link: a stopped control never leaves it cut.

    >>> from diaspora.fabric import EmbeddedServer, link_fault
    >>> async def main() -> None:
    ...     async with EmbeddedServer() as server, LinkProxy(server.port) as proxy:
    ...         async with Fabric(server.url) as fabric, LinkControl(fabric, "edge", proxy):
    ...             reply = await link_fault(fabric, "edge", "cut", seconds=10)
    ...             print(reply["ok"], reply["fault"], list(reply["active"]))
    >>> anyio.run(main)
    True cut_link ['cut_link']
    """

    def __init__(
        self, fabric: Fabric, site: str, proxy: LinkProxy, *, events: EventSink | None = None
    ) -> None:
        self.fabric = fabric
        self.site = site
        self.proxy = proxy
        self.events: EventSink = fabric if events is None else events
        #: The subject orders arrive on.
        self.subject = link_control_subject(site)
        self._in_force: dict[LinkFaultKind, _InForce] = {}
        self._tg: TaskGroup | None = None
        self._stack: AsyncExitStack | None = None  # the timers' task group
        self._orders: AsyncExitStack | None = None  # the subscription
        self._log = get_logger(site=site, subject=self.subject)

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError(f"LinkControl of site {self.site!r} is already running")
        async with AsyncExitStack() as stack:
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)  # runs first on the way out
            async with AsyncExitStack() as orders:
                await orders.enter_async_context(
                    self.fabric.subscription(self.subject, self._on_order, flush=True)
                )
                self._orders = orders.pop_all()
            self._stack = stack.pop_all()
        self._log.info("link_control_started")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        orders, self._orders = self._orders, None
        if stack is None:
            return
        try:
            with anyio.CancelScope(shield=True):
                if orders is not None:  # first: no order may come in after the heal
                    await orders.aclose()
                await self._heal("stop")
        finally:
            await stack.aclose()
            self._tg = None
            self._log.info("link_control_stopped")

    # -- what is in force -----------------------------------------------------------

    def active(self) -> dict[str, float | None]:
        """Each fault in force (by its name) and the seconds until it lifts (``None``: healed
        only by an order)."""
        now = anyio.current_time()
        return {
            kind.value: None if f.lifts_at is None else round(max(0.0, f.lifts_at - now), 3)
            for kind, f in self._in_force.items()
        }

    # -- orders ---------------------------------------------------------------------

    async def apply(self, fault: LinkFault) -> dict[str, Any]:
        """Put ``fault`` on the link now, as if it came as an order; return the reply body."""
        if self._tg is None:
            raise RuntimeError(f"LinkControl of site {self.site!r} is not running (async with)")
        kind = fault.kind
        reply: dict[str, Any] = {"ok": True, "site": self.site, **fault.as_order()}
        if kind is LinkFaultKind.HEAL:
            reply["lifted"] = await self._heal("order")
        elif kind is LinkFaultKind.RESET:
            reply["connections"] = self.proxy.reset()
            await self._emit(LinkFaulted(name=self.site, fault=kind.value))
        else:
            self._start(fault)
            await self._emit(
                LinkFaulted(
                    name=self.site,
                    fault=kind.value,
                    seconds=fault.seconds,
                    jitter=fault.jitter,
                    rate=fault.rate,
                    duration=fault.duration,
                )
            )
        reply["active"] = self.active()
        return reply

    async def _on_order(self, msg: Inbound) -> None:
        try:
            fault = LinkFault.from_json(msg.data)
            reply = await self.apply(fault)
        except ConfigError as exc:
            self._log.warning("link_order_refused", error=str(exc))
            reply = {"ok": False, "site": self.site, "error": str(exc)}
        except Exception as exc:  # a broken order must never stop the control
            self._log.error("link_order_failed", error=repr(exc))
            reply = {"ok": False, "site": self.site, "error": f"order failed: {exc!r}"}
        if not msg.reply:  # published, not requested: nobody to answer
            return
        try:
            await msg.respond(json.dumps(reply).encode())
        except FabricUnavailable as exc:
            self._log.warning("link_order_unanswered", error=str(exc))

    # -- lasting faults -------------------------------------------------------------

    def _start(self, fault: LinkFault) -> None:
        kind = fault.kind
        old = self._in_force.pop(kind, None)
        if old is not None and old.scope is not None:
            old.scope.cancel()  # replaced: its timer must not lift the newer fault
        proxy = self.proxy
        if kind is LinkFaultKind.LATENCY:
            assert fault.seconds is not None
            proxy.set_latency(fault.seconds, fault.jitter or 0.0)
        elif kind is LinkFaultKind.BANDWIDTH:
            proxy.set_bandwidth(fault.rate)
        elif kind is LinkFaultKind.BLACKHOLE:
            proxy.blackhole()  # open-ended on the proxy: our timer lifts it
        else:
            proxy.cut()
        now = anyio.current_time()
        duration = fault.duration
        entry = _InForce(fault, None if duration is None else now + duration)
        self._in_force[kind] = entry
        if duration is not None:
            assert self._tg is not None
            entry.scope = anyio.CancelScope()
            self._tg.start_soon(self._lift_after, entry, duration)

    async def _lift_after(self, entry: _InForce, duration: float) -> None:
        assert entry.scope is not None
        with entry.scope:
            await anyio.sleep(duration)
            kind = entry.fault.kind
            if self._in_force.get(kind) is not entry:
                return
            del self._in_force[kind]
            self._undo(kind)
            await self._emit(LinkHealed(name=self.site, fault=kind.value, by="timer"))

    def _undo(self, kind: LinkFaultKind) -> None:
        """End one aspect on the proxy; the others stay."""
        if kind is LinkFaultKind.LATENCY:
            self.proxy.set_latency(0.0)
        elif kind is LinkFaultKind.BANDWIDTH:
            self.proxy.set_bandwidth(None)
        elif kind is LinkFaultKind.BLACKHOLE:
            self.proxy.end_blackhole()
        else:
            self.proxy.reopen()

    async def _heal(self, by: str) -> list[str]:
        """Lift every fault now; return the names of those that were in force."""
        lifted = [kind for kind in _LASTING if kind in self._in_force]
        for entry in self._in_force.values():
            if entry.scope is not None:
                entry.scope.cancel()
        self._in_force.clear()
        self.proxy.heal()
        for kind in lifted:
            await self._emit(LinkHealed(name=self.site, fault=kind.value, by=by))
        return [kind.value for kind in lifted]

    async def _emit(self, event: LinkFaulted | LinkHealed) -> None:
        try:
            await self.events.emit(event)
        except Exception as exc:  # events are best effort: the fault is in force regardless
            self._log.warning("link_event_not_emitted", kind=event.kind, error=repr(exc))
