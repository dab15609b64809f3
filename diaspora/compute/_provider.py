"""Providers: what acquires a pool's workers, behind one small interface.

A :class:`Provider` starts a worker at a site (an OS process hosting the
actors of a :class:`WorkerOrder`), stops it, lists its workers with their
state, and says whether a site can take workers now (``health``). The pool
controller (:class:`~diaspora.compute.PoolController`) decides; the provider
only acts and reports. Providers ship in the workflow layer, which owns
process nodes: :class:`~diaspora.workflow.ProcessProvider` and
:class:`~diaspora.workflow.ParslProvider`.

A provider is an async context manager: its workers live inside its
``async with`` and are stopped when it ends.

>>> WorkerInfo("recon-1", "hpc", WorkerState.RUNNING).alive
True
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from diaspora.compute._pools import PoolActor

__all__ = ["Provider", "WorkerInfo", "WorkerOrder", "WorkerState"]


class WorkerState(StrEnum):
    """Where a worker is in its life."""

    STARTING = "starting"  #: acquired, its actors not yet started
    RUNNING = "running"  #: its actors started
    EXITED = "exited"  #: gone (crashed, killed, stopped, or its block lost)


@dataclass(frozen=True, slots=True)
class WorkerOrder:
    """What the controller asks of a provider: worker ``id`` of ``pool`` at ``site``,
    hosting ``actors``; ``guests`` are the actors it may be asked to take later (the
    pool's movable ones, see :mod:`diaspora.compute._guests`)."""

    pool: str
    id: str
    site: str
    actors: tuple[PoolActor, ...] = ()
    guests: tuple[PoolActor, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A provider's view of one worker (``pid`` where known; ``error`` why it exited)."""

    id: str
    site: str
    state: WorkerState
    pid: int | None = None
    error: str | None = None

    @property
    def alive(self) -> bool:
        return self.state is not WorkerState.EXITED


@runtime_checkable
class Provider(Protocol):
    """Acquires and releases a pool's workers (see the module's documentation)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def start(self, order: WorkerOrder) -> None:
        """Begin acquiring the worker; its state is then :attr:`WorkerState.STARTING`."""
        ...

    async def stop(self, worker: str, *, grace: float | None = None) -> None:
        """Stop the worker (gracefully where possible, for at most ``grace`` seconds:
        ``None``, the provider's own; ``0``, kill it now); it then reads as exited."""
        ...

    def workers(self) -> list[WorkerInfo]:
        """Every worker started and not yet forgotten, with its state."""
        ...

    def forget(self, worker: str) -> None:
        """Drop an exited worker from :meth:`workers`."""
        ...

    async def health(self, site: str) -> bool:
        """Whether ``site`` can host workers now (its server answers, its queue takes jobs)."""
        ...

    async def host(self, worker: str, actor: str) -> bool:
        """Ask running ``worker`` to take ``actor`` (one of its order's guests); whether it did."""
        ...

    async def release(self, worker: str, actor: str) -> bool:
        """Ask ``worker`` to stop guest ``actor`` (its final checkpoint written); whether it did."""
        ...

    async def reaches(self, site: str, domain: str) -> bool:
        """Whether ``site``'s server reaches JetStream domain ``domain`` now (its link is up):
        a moved actor goes home only once home reaches its checkpoint site."""
        ...
