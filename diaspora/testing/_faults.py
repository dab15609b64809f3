"""Faults a test injects into a running actor: crash, hang, or freeze at its next message.

Fault injection is a runtime stage, :class:`FaultInjection`, that
:mod:`diaspora.testing` installs into the actors it runs (a
:class:`~diaspora.testing.Workflow` does it for its whole tree, process
nodes included: :func:`with_fault_injection`). Nothing of it is in an actor
that runs in production. Inside the actor's process, call
:meth:`FaultInjection.inject`; across processes, publish a msgpack map
``{"fault": "crash" | "hang" | "freeze", "seconds": s}`` to
``diaspora.control.actor.<actor>.fault`` (:func:`fault_subject`); a request
gets ``b"ok"`` back. Injected faults do not count as ``handle`` failures, so
they never turn a message into a dead letter.

- ``crash``: the next message raises :class:`~diaspora.errors.InjectedFault`
  before ``handle``.
- ``hang``: the next ``handle`` first waits ``seconds`` (default: forever)
  inside the actor's ``handle_deadline``, which turns it into a crash.
- ``freeze``: the next message blocks the whole process for ``seconds`` (a
  stuck C call); only a process node's heartbeat watchdog notices.

A source (an actor without inputs) takes the fault at its next ``emit``.

>>> fault_subject("root.sum")
'diaspora.control.actor.root_sum.fault'
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

import anyio

from diaspora import codec
from diaspora.errors import (
    ActorCrashed,
    ConfigError,
    DecodeError,
    HandlerHung,
    InjectedFault,
)
from diaspora.events import Crashed
from diaspora.fabric import Inbound
from diaspora.fabric._naming import token
from diaspora.stage import Host, InputItem, Next, NextOut, OutputItem, Stage

__all__ = ["Fault", "FaultInjection", "FaultOrder", "InjectedFault", "fault_subject"]


class Fault(Enum):
    """The kinds of fault an actor accepts."""

    CRASH = "crash"
    HANG = "hang"
    FREEZE = "freeze"


@dataclass(frozen=True, slots=True)
class FaultOrder:
    """One injected fault: its kind and, for hang/freeze, how long (``None``: forever)."""

    fault: Fault
    seconds: float | None = None

    @classmethod
    def from_mapping(cls, data: Any) -> FaultOrder:
        """Parse ``{"fault": "crash", "seconds": 2}`` (what the control subject carries)."""
        if not isinstance(data, dict) or "fault" not in data:
            raise ConfigError(f"fault order {data!r}: expected a map with a 'fault' key")
        try:
            fault = Fault(data["fault"])
        except ValueError:
            kinds = ", ".join(f.value for f in Fault)
            raise ConfigError(f"fault order: {data['fault']!r} is not one of {kinds}") from None
        seconds = data.get("seconds")
        if seconds is not None and (
            isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0
        ):
            raise ConfigError(f"fault order: seconds={seconds!r} must be a number >= 0")
        if fault is Fault.FREEZE and seconds is None:
            raise ConfigError("fault order: freeze needs seconds (a frozen process never thaws)")
        return cls(fault, None if seconds is None else float(seconds))


def fault_subject(actor: str) -> str:
    """The control subject on which an actor accepts injected faults."""
    return f"diaspora.control.actor.{token(actor)}.fault"


class FaultInjection(Stage):
    """Carries out injected faults just before ``handle`` (or a source's ``emit``).

    Runs last in the inbound chain, so a fault is never recorded as a
    failure of the message it hits.
    """

    name = "fault_injection"

    def __init__(self) -> None:
        self._orders: deque[FaultOrder] = deque()
        self._host: Host | None = None

    def inject(self, fault: Fault | str, seconds: float | None = None) -> None:
        """Queue a fault for the next message (or the next emit of a source)."""
        order = FaultOrder.from_mapping({"fault": Fault(fault).value, "seconds": seconds})
        self._orders.append(order)

    async def setup(self, host: Host) -> None:
        self._host = host
        host.task_group.start_soon(self._serve)

    async def _serve(self) -> None:
        """Accept fault orders on the actor's control subject."""
        host = self._host
        assert host is not None

        async def on_order(msg: Inbound) -> None:
            try:
                order = FaultOrder.from_mapping(codec.decode(msg.data))
            except (DecodeError, ConfigError) as exc:
                host.log.warning("fault_order_refused", error=str(exc))
                await msg.respond(f"error: {exc}".encode())
                return
            self._orders.append(order)
            host.log.info("fault_injected", fault=order.fault.value, seconds=order.seconds)
            await msg.respond(b"ok")

        async with host.fabric.subscription(fault_subject(host.id), on_order):
            await anyio.sleep_forever()

    async def inbound(self, item: InputItem, next: Next) -> None:
        if self._orders:
            assert self._host is not None
            await self._apply(item.source, self._host.handle_deadline)
        await next(item)

    async def outbound(self, out: OutputItem, next: NextOut) -> None:
        if self._orders and out.source is None:
            await self._apply(f"{out.subject}#{out.item}", None)
        await next(out)

    async def _apply(self, where: str, deadline: float | None) -> None:
        host = self._host
        assert host is not None
        order = self._orders.popleft()
        host.log.warning("fault_applied", fault=order.fault.value, at=where)
        if order.fault is Fault.CRASH:
            exc: Exception = InjectedFault(f"actor {host.id!r}: injected crash at {where}")
            await host.event(Crashed(name=host.id, reason=repr(exc), injected=True))
            raise ActorCrashed(host.id, exc) from exc
        if order.fault is Fault.FREEZE:
            time.sleep(order.seconds or 0.0)  # noqa: ASYNC251 - blocking the loop is the fault
            return
        with anyio.move_on_after(deadline) as scope:
            await anyio.sleep(math.inf if order.seconds is None else order.seconds)
        if scope.cancelled_caught:
            exc = HandlerHung(f"actor {host.id!r}: injected hang at {where} ran past {deadline}s")
            await host.event(Crashed(name=host.id, reason=repr(exc), injected=True))
            raise ActorCrashed(host.id, exc) from exc
