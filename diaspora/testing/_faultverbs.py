"""The injector's verbs: one method per fault kind, each building a :class:`FaultSpec`.

A part of :class:`~diaspora.testing.Injector`, kept apart from how faults are
carried out; ``injector.crash("root.sum")`` is ``injector.apply(FaultSpec(
FaultKind.CRASH, "root.sum"))``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from diaspora.testing._faultspec import FaultKind, FaultSpec, Injected

__all__ = ["FaultVerbs"]


class FaultVerbs:
    """Each fault by name; :meth:`apply` (the injector's) carries it out."""

    #: carries one fault out (the injector's :meth:`~diaspora.testing.Injector.apply`)
    apply: Callable[[FaultSpec], Awaitable[Injected]]

    async def crash(self, actor: str) -> Injected:
        """The actor raises at its next message (its supervisor restarts it)."""
        return await self.apply(FaultSpec(FaultKind.CRASH, actor))

    async def hang(self, actor: str, seconds: float | None = None) -> Injected:
        """The actor's next ``handle`` blocks ``seconds`` (default: past its ``handle_deadline``,
        which makes it a crash; an actor without a deadline then hangs for good)."""
        return await self.apply(FaultSpec(FaultKind.HANG, actor, seconds=seconds))

    async def freeze(self, target: str, seconds: float) -> Injected:
        """The actor's whole process blocks ``seconds`` at its next message (a stuck C call)."""
        return await self.apply(FaultSpec(FaultKind.FREEZE, target, seconds=seconds))

    async def kill_process(self, target: str) -> Injected:
        """SIGKILL the process running ``target`` (an actor id or a process-node path)."""
        return await self.apply(FaultSpec(FaultKind.KILL_PROCESS, target))

    async def kill_server(self, *, duration: float | None = None) -> Injected:
        """SIGKILL the nats-server; start it again after ``duration`` seconds if given."""
        return await self.apply(FaultSpec(FaultKind.KILL_SERVER, duration=duration))

    async def restart_server(self) -> Injected:
        """Start a killed server again, or restart a running one gracefully (same port, store)."""
        return await self.apply(FaultSpec(FaultKind.RESTART_SERVER))

    async def pause_server(self, *, duration: float | None = None) -> Injected:
        """SIGSTOP the server (it holds its sockets, answers nothing); resume after ``duration``."""
        return await self.apply(FaultSpec(FaultKind.PAUSE_SERVER, duration=duration))

    async def resume_server(self) -> Injected:
        """SIGCONT a paused server."""
        return await self.apply(FaultSpec(FaultKind.RESUME_SERVER))

    async def latency(
        self, seconds: float, *, jitter: float = 0.0, duration: float | None = None
    ) -> Injected:
        """Delay the link by ``seconds`` (plus up to ``jitter``) each way."""
        return await self.apply(
            FaultSpec(FaultKind.LATENCY, seconds=seconds, jitter=jitter, duration=duration)
        )

    async def bandwidth(
        self, bytes_per_second: float, *, duration: float | None = None
    ) -> Injected:
        """Cap the link at ``bytes_per_second`` each way."""
        return await self.apply(
            FaultSpec(FaultKind.BANDWIDTH, rate=bytes_per_second, duration=duration)
        )

    async def reset_link(self) -> Injected:
        """Reset every connection on the link (TCP RST); clients reconnect at once."""
        return await self.apply(FaultSpec(FaultKind.RESET_LINK))

    async def blackhole(self, duration: float) -> Injected:
        """Hold every byte both ways for ``duration`` seconds (connections stay open)."""
        return await self.apply(FaultSpec(FaultKind.BLACKHOLE, duration=duration))

    async def cut_link(self, *, duration: float | None = None) -> Injected:
        """Refuse new connections and reset open ones, for ``duration`` or until healed."""
        return await self.apply(FaultSpec(FaultKind.CUT_LINK, duration=duration))

    async def heal_link(self) -> Injected:
        """End every link fault: no latency, no cap, no blackhole, connections accepted."""
        return await self.apply(FaultSpec(FaultKind.HEAL_LINK))
