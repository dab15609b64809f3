"""Faults a test injects into a running actor: crash, hang, or freeze at its next message.

In the actor's own process, call :meth:`ActorRuntime.inject`. Across
processes, with fault injection enabled on the actor's fabric
(``Fabric(faults=True)`` or ``$DIASPORA_FAULTS=1``), publish a msgpack map
``{"fault": "crash" | "hang" | "freeze", "seconds": s}`` to
``diaspora.control.actor.<actor>.fault`` (:func:`fault_subject`); a request
gets ``b"ok"`` back. Injected faults do not count as ``handle`` failures, so
they never turn a message into a dead letter.

- ``crash``: the next message raises :class:`InjectedFault` before ``handle``.
- ``hang``: the next ``handle`` first waits ``seconds`` (default: forever)
  inside the actor's ``handle_deadline``, which turns it into a crash.
- ``freeze``: the next message blocks the whole process for ``seconds`` (a
  stuck C call); only a process node's heartbeat watchdog notices.

>>> fault_subject("root.sum")
'diaspora.control.actor.root_sum.fault'
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from diaspora.errors import ConfigError, DiasporaError
from diaspora.fabric.naming import token

__all__ = ["Fault", "FaultOrder", "InjectedFault", "fault_subject"]


class Fault(Enum):
    """The kinds of fault an actor accepts."""

    CRASH = "crash"
    HANG = "hang"
    FREEZE = "freeze"


class InjectedFault(DiasporaError):
    """Raised inside an actor by an injected ``crash`` (never by real code)."""


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
