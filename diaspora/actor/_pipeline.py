"""The standard pipeline: which stages an actor's runtime drives, in which order.

InputItem, first to last::

    gap recovery → [partition] → poison → decode → [QoS admission] → extra… → handle

OutputItem, first to last (then the publisher)::

    extra… → [history tap] → output scan → [flow gate]

Bracketed stages are there only when they apply (a partition, a declared
QoS spec, a history). The poison stage sits after gap recovery so that it
also sees the items recovery replays, and before decode so that an
undecodable payload already dead-lettered is skipped after a restart.
Extra stages (fault injection, or a later layer's) run just before
``handle`` inbound and first outbound.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from diaspora.actor._actor import Actor
from diaspora.actor._checkpoint import CheckpointSlot
from diaspora.actor._emit import Emitter, OutputScan
from diaspora.actor._handle import Decode, HandleStage, Partition
from diaspora.actor._poison import Poison, PoisonPolicy
from diaspora.fabric import is_event_input
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.stage import Host, InputItem, Next, Stage, split_chain
from diaspora.streams._history import HistoryBuffer
from diaspora.streams._qos import QosSpec
from diaspora.streams._recovery import GapRecovery
from diaspora.streams._registry import lookup_qos
from diaspora.streams._stages import FlowGateStage, HistoryTap, QosAdmission

__all__ = ["Pipeline", "Step", "build_pipeline", "link"]

#: An inbound stage's hook: ``step(item, next)``.
Step = Callable[[InputItem, Next], Awaitable[None]]


@dataclass(slots=True)
class Pipeline:
    """The stages of one runtime start, by role."""

    inbound: list[Stage]
    outbound: list[Stage]
    poison: Poison
    recovery: GapRecovery
    scan: OutputScan
    gate: FlowGateStage
    emitter: Emitter

    @property
    def all(self) -> list[Stage]:
        """Every stage once, in inbound then outbound order."""
        seen: dict[int, Stage] = {}
        inline = [s.decode for s in self.inbound if isinstance(s, HandleStage) and s.decode]
        for stage in [*self.inbound, *inline, *self.outbound, self.emitter]:
            seen.setdefault(id(stage), stage)
        return list(seen.values())

    def add_history(self, history: HistoryBuffer) -> None:
        """Tap every output into ``history`` (before the output scan, so skipped ones too)."""
        at = self.outbound.index(self.scan)
        self.outbound.insert(at, HistoryTap(history))


async def build_pipeline(
    host: Host,
    actor: Actor,
    slot: CheckpointSlot,
    *,
    inputs: Sequence[str],
    partition: tuple[int, int] | None,
    guard: contextlib.AbstractAsyncContextManager[Any],
    extra: Sequence[Stage],
    ensure_output: Callable[[str], Any],
    publisher_of: Callable[[], OrderedPublisher],
    poison_policy: PoisonPolicy | None = None,
) -> Pipeline:
    """Make the stages of one start; reads the inputs' QoS specs (reconstructors load now)."""
    specs: dict[str, QosSpec] = {}
    reconstructors = {}
    for subject in inputs:
        if is_event_input(subject):
            continue  # event inputs have no QoS spec (the events stream is best effort)
        spec = await lookup_qos(host.fabric, subject)
        if spec is None:
            continue
        specs[subject] = spec
        reconstructor = spec.make_reconstructor()
        if reconstructor is not None:
            reconstructors[subject] = reconstructor
    poison = Poison(slot, actor, poison_policy)
    recovery = GapRecovery(reconstructors)
    inbound: list[Stage] = [recovery]
    if partition is not None:
        inbound.append(Partition(*partition))
    inbound.append(poison)
    between: list[Stage] = [QosAdmission(specs, recovery)] if specs else []
    between += [s for s in extra if s.overrides("inbound")]
    if between:  # they see decoded messages
        inbound += [Decode(), *between, HandleStage(actor, poison, guard)]
    else:  # handle decodes inline payloads itself (one coroutine less per message)
        inbound.append(HandleStage(actor, poison, guard, Decode()))
    inbound += [s for s in extra if not s.overrides("inbound")]
    scan = OutputScan()
    gate = FlowGateStage(publisher_of)
    outbound: list[Stage] = [*extra, scan, gate]
    emitter = Emitter(host, ensure_output)
    return Pipeline(inbound, outbound, poison, recovery, scan, gate, emitter)


def link(stages: Sequence[Stage], last: Next | None = None) -> tuple[Step, Next]:
    """The inbound chain as ``(first stage's inbound, the rest)``: call ``step(item, rest)``."""

    async def end(item: InputItem) -> None:
        return None

    return split_chain(stages, "inbound", last or end)
