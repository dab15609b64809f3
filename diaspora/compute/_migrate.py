"""Live migration: move a running actor to another worker with pre-copy rounds.

A migratable actor keeps its state in a
:class:`~diaspora.compute.MigratableState` and runs with the
:class:`Migratable` stage on every worker that may host it (one is its
``home``); the others wait as *standbys*. :func:`migrate` (or ``diaspora
migrate <actor> --to <worker>``) asks the running instance, over
``diaspora.control.migrate.<actor>``, to move:

1. **prepare**: the standby at ``to`` readies an empty copy;
2. **pre-copy**: while the source keeps handling inputs, rounds ship the
   keys changed since the previous round (the first: all of them); rounds
   stop when the rest fits ``budget_ms`` at the measured rate, or when it
   stops shrinking; past ``max_rounds`` or ``max_factor`` times the state
   sent, the migration aborts and the source keeps running;
3. **pause**: the source stops taking inputs (the one in ``handle``
   finishes), waits for its outputs' acks, sends the last changed keys, its
   input positions and its stages' checkpoint sections;
4. **switch**: the standby claims the checkpoint by compare-and-set on the
   source's epoch (so the source is fenced and steps down) and resumes from
   positions + 1; the source emits :class:`~diaspora.events.Migrated`.

Either side dying at any step leaves one owner: before the switch the
source still owns the checkpoint (a dead standby aborts the migration, a
dead source restarts from its checkpoint); at the switch the compare-and-set
decides (a source that got no answer claims its own epoch again, so a late
claim fails). Outputs keep their message ids, so anything handled twice
across a crash is stored once.

A producer's history travels in the same rounds and pause (the items added
since the last round) and is served by the new owner
(:mod:`diaspora.compute._migrate_history`).

>>> policy = MigrationPolicy(budget_ms=5.0)
>>> policy.precopy, migrate_subject("root.counter")
(True, 'diaspora.control.migrate.root_counter')
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import Any, Final

from diaspora.errors import ConfigError, MigrationFailed
from diaspora.events import Migrated
from diaspora.fabric import Fabric
from diaspora.fabric._control import control_request
from diaspora.fabric._naming import token

__all__ = [
    "MIGRATE_PREFIX",
    "MigrationPolicy",
    "migrate",
    "migrate_subject",
    "shadow_subject",
]

#: Where the running instance of an actor takes migration requests.
MIGRATE_PREFIX: Final = "diaspora.control.migrate"
_SHADOW_PREFIX: Final = "diaspora.migrate"


def migrate_subject(actor: str) -> str:
    """The control subject on which the running instance of ``actor`` takes ``migrate``."""
    return f"{MIGRATE_PREFIX}.{token(actor)}"


def shadow_subject(actor: str, worker: str) -> str:
    """The subject on which the standby of ``actor`` at ``worker`` receives state."""
    return f"{_SHADOW_PREFIX}.{token(actor)}.{token(worker)}"


@dataclass(frozen=True, slots=True)
class MigrationPolicy:
    """When pre-copy stops (rules of Xen and QEMU) and how it sends.

    ``budget_ms``: switch once the estimated final delta takes at most this
    long; ``max_rounds`` and ``max_factor`` (times the state size sent in
    all) abort a migration that does not converge. ``precopy=False`` is
    stop-and-copy: pause at once and send the whole state. ``in_flight``
    requests are outstanding at a time, of at most ``chunk`` bytes each.
    """

    budget_ms: float = 20.0
    max_rounds: int = 30
    max_factor: float = 3.0
    precopy: bool = True
    in_flight: int = 8
    chunk: int = 1 << 20
    #: seconds one request to the standby may take (the switch too)
    timeout: float = 10.0

    def __post_init__(self) -> None:
        for name in ("budget_ms", "max_factor", "timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"migration policy: {name}={getattr(self, name)!r} must be > 0")
        for name in ("max_rounds", "in_flight", "chunk"):
            if not int(getattr(self, name)) >= 1:
                raise ConfigError(f"migration policy: {name}={getattr(self, name)!r} must be >= 1")

    @classmethod
    def of(cls, raw: Any) -> MigrationPolicy:
        """The policy a control request carries (unknown keys are an error naming them)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"migration policy: {raw!r} is not a map")
        known = set(cls.__dataclass_fields__)
        if unknown := sorted(set(raw) - known):
            raise ConfigError(f"migration policy: unknown keys {unknown} (known: {sorted(known)})")
        return cls(**raw)


async def migrate(
    fabric: Fabric,
    actor: str,
    *,
    to: str,
    policy: MigrationPolicy | None = None,
    timeout: float = 300.0,
) -> Migrated:
    """Move the running instance of ``actor`` to worker ``to``; what it took.

    Raises :class:`~diaspora.errors.MigrationFailed` (the source keeps
    running) with the reason: nobody runs a migratable ``actor``, no standby
    at ``to``, no convergence, a side died.

    >>> async def move(fabric: Fabric) -> None:
    ...     done = await migrate(fabric, "root.counter", to="hpc-1")
    ...     print(done.rounds, done.downtime_ms)
    """
    request = {"to": to, "policy": asdict(policy or MigrationPolicy()), "request": uuid.uuid4().hex}
    answer = await control_request(
        fabric,
        migrate_subject(actor),
        request,
        timeout=timeout,
        nobody=f"is actor {actor!r} running with the Migratable stage?",
        error=MigrationFailed,
    )
    return Migrated(
        name=actor,
        origin=str(answer["from"]),
        to=str(answer["to"]),
        rounds=int(answer["rounds"]),
        bytes=int(answer["bytes"]),
        downtime_ms=float(answer["downtime_ms"]),
    )
