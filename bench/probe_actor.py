"""The actor the restart-latency rows restart: in its own module, which imports only
Diaspora, as a user's actor module would (a process node imports it when it starts)."""

from __future__ import annotations

import time

from diaspora import Actor, Message

PROBES = "bench.probes"
ECHOES = "bench.echoes"


class Probe(Actor):
    """Echoes each probe; raises once on a probe whose ``crash`` id is new to ``crashed``."""

    inputs = (PROBES,)
    checkpoint_every = 1
    #: the raise must crash the actor so that the supervisor restarts it (the default,
    #: "retry", would call handle again in place after a backoff: not a restart)
    on_poison = "crash"

    def __init__(self, crashed: dict[int, float] | None = None) -> None:
        self.crashed = crashed

    async def handle(self, msg: Message) -> None:
        crash = msg.data.get("crash")
        if self.crashed is not None and crash is not None and crash not in self.crashed:
            self.crashed[crash] = time.time()
            raise RuntimeError(f"probe crash {crash}")
        await self.emit(ECHOES, {"probe": msg.data["probe"]})
