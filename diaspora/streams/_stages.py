"""The streams layer's runtime stages: QoS admission, the producer's flow gate, the history tap.

- :class:`QosAdmission` (inbound): measures each input that has a declared
  QoS spec (:class:`~diaspora.streams._flow.InputFlow`), switches it into its
  overload policy and back (events ``policy_on``/``policy_off``), lets the
  policy decide what reaches ``handle`` (skip, aggregate), reports the
  consumer's positions to producers, reports stalls and, if the spec says
  so, fills them with reconstructed items at the stream's rate.
- :class:`FlowGateStage` (outbound): producers of a ``block`` stream wait
  for its slowest consumer.
- :class:`HistoryTap` (outbound): every output goes into the actor's replay
  history, served to consumers whose stream lost items.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Final

import anyio
from anyio.abc import TaskStatus

from diaspora import codec
from diaspora.events import PolicyOff, PolicyOn, Stall, StallEnd
from diaspora.fabric import Inbound
from diaspora.fabric import headers as H
from diaspora.fabric._naming import partition_base
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.stage import Host, InputItem, Next, NextOut, OutputItem, Stage
from diaspora.streams._flow import (
    Action,
    FlowGate,
    InputFlow,
    Mode,
    Switch,
    flow_subject,
    position_report,
)
from diaspora.streams._history import HistoryBuffer
from diaspora.streams._qos import OverloadPolicy, Policy, QosSpec
from diaspora.streams._reconstruct import ReconstructionError, fill_gap
from diaspora.streams._recovery import GapRecovery
from diaspora.streams._registry import force_subject, lookup_qos
from diaspora.streams._replay import HistoryServer

__all__ = ["FlowGateStage", "HistoryTap", "QosAdmission"]

_MIN_TICK_S: Final = 0.005


def _switch_event(host: Host, switch: Switch) -> PolicyOn | PolicyOff:
    cls = PolicyOn if switch.mode is Mode.DEGRADED else PolicyOff
    fields = switch.fields()
    return cls(name=host.id, **fields)


class QosAdmission(Stage):
    """Applies each input's declared QoS spec (see the module docstring)."""

    name = "qos_admission"

    def __init__(self, specs: Mapping[str, QosSpec], recovery: GapRecovery) -> None:
        self.flows = {subject: InputFlow(subject, spec) for subject, spec in specs.items()}
        self._recovery = recovery
        self._stall_fills: dict[str, int] = {}
        self._host: Host | None = None
        self._orders: list[tuple[str, OverloadPolicy | None, str]] = []

    async def setup(self, host: Host) -> None:
        self._host = host
        for subject in self.flows:  # pre-emptive switches (force_policy), applied between items
            await host.task_group.start(self._listen, host, subject)

    async def _listen(self, host: Host, subject: str, *, task_status: TaskStatus[None]) -> None:
        async def order(msg: Inbound) -> None:
            try:
                data = codec.decode(msg.data)
                policy = data["policy"]
                parsed = None if policy is None else OverloadPolicy.from_config(policy)
                self._orders.append((subject, parsed, str(data.get("by", "?"))))
            except Exception as exc:  # a bad order is ignored, not fatal to the consumer
                host.log.warning("qos_order_ignored", subject=subject, reason=repr(exc))

        async with host.fabric.subscription(force_subject(subject), order, flush=True):
            task_status.started()
            await anyio.sleep_forever()

    async def _apply_orders(self, host: Host) -> None:
        orders, self._orders = self._orders, []
        for subject, policy, by in orders:
            switch = self.flows[subject].force(policy, by)
            if switch is not None:
                await host.event(_switch_event(host, switch))

    def overrides(self, hook: str) -> bool:
        return bool(self.flows) and Stage.overrides(self, hook)

    def tick(self) -> float | None:
        tick = math.inf
        for flow in self.flows.values():
            spec = flow.spec
            if spec.stall_deadline is not None:
                tick = min(tick, spec.stall_deadline / 4)
            if spec.fill_stalls and spec.rate:
                tick = min(tick, 1.0 / spec.rate)
        return max(tick, _MIN_TICK_S) if math.isfinite(tick) else None

    async def inbound(self, item: InputItem, next: Next) -> None:
        flow = self.flows.get(item.subject)
        if flow is None or item.seq == 0 or item.message is None:
            await next(item)
            return
        host = self._host
        assert host is not None
        if self._orders:
            await self._apply_orders(host)
        message = item.message
        now = time.time()
        emitted = _float(message.headers.get(H.EMITTED_AT))
        flow.observe(
            seq=item.seq,
            head=max(item.seq + item.pending, host.input_head(item.subject)),
            age=now - item.timestamp if item.timestamp else None,
            latency=now - emitted if emitted is not None else None,
        )
        if flow.lag.lag > host.stats.max_lag:
            host.stats.max_lag = flow.lag.lag
        switch = flow.update_mode()
        if switch is not None:
            await host.event(_switch_event(host, switch))
        admission = flow.admit(item.seq, message.data)
        if admission.action is not Action.HANDLE:
            if admission.action is Action.SKIP:
                host.stats.skipped += 1
            return
        if admission.count > 1:
            item.message = dataclasses.replace(
                message,
                data=admission.data,
                headers={**message.headers, H.AGGREGATED: str(admission.count)},
            )
        started = time.perf_counter()
        await next(item)
        flow.handled(item.seq, time.perf_counter() - started)

    async def after_batch(self) -> None:
        """Positions to producers, mode switches, stalls (and filling them)."""
        host = self._host
        assert host is not None
        if self._orders:
            await self._apply_orders(host)
        for subject, flow in self.flows.items():
            report = position_report(host.id, host.positions.get(subject, 0))
            await host.fabric.publish_core(flow_subject(subject), report)
            switch = flow.update_mode()
            if switch is not None:
                await host.event(_switch_event(host, switch))
            stall = flow.check_stall()
            if stall is True:
                host.stats.stalls += 1
                await host.event(
                    Stall(name=host.id, subject=subject, deadline_s=flow.spec.stall_deadline)
                )
            elif stall is False:
                await host.event(StallEnd(name=host.id, subject=subject))
            if flow.stalled and flow.spec.fill_stalls:
                await self._fill_stall(host, subject, flow)

    async def _fill_stall(self, host: Host, subject: str, flow: InputFlow) -> None:
        """During a stall, hand reconstructed items to ``handle`` at the stream's rate."""
        rate = flow.spec.rate
        reconstructor = self._recovery.reconstructors.get(subject)
        if rate is None or reconstructor is None:
            return
        quiet = time.monotonic() - flow.last_arrival - (flow.spec.stall_deadline or 0.0)
        due = int(quiet * rate) - self._stall_fills.get(subject, 0)
        for _ in range(max(0, due)):
            n = self._stall_fills[subject] = self._stall_fills.get(subject, 0) + 1
            try:
                data = fill_gap(reconstructor, self._recovery.before(subject, None), None, 1)[0]
            except ReconstructionError as exc:
                host.log.warning("stall_not_filled", subject=subject, error=str(exc))
                return
            await self._recovery.hand_synthetic(
                host.submit, subject, f"{subject}:stall{n}", data, None, n
            )


class FlowGateStage(Stage):
    """Producers of a ``block`` stream wait while its slowest consumer is too far behind."""

    name = "flow_gate"

    def __init__(self, publisher_of: Callable[[], OrderedPublisher]) -> None:
        #: a callable giving the running publisher (it exists only while the actor runs)
        self._publisher_of = publisher_of
        self._gates: dict[str, FlowGate | None] = {}
        self._host: Host | None = None

    async def setup(self, host: Host) -> None:
        self._host = host

    def overrides(self, hook: str) -> bool:
        if hook == "outbound":  # in the chain only while an output has a gate
            return any(gate is not None for gate in self._gates.values())
        return Stage.overrides(self, hook)

    def gate_of(self, subject: str) -> FlowGate | None:
        """The open gate of output ``subject`` (``None``: it does not block)."""
        return self._gates.get(subject)

    async def gate(self, subject: str) -> None:
        """Open the gate of output ``subject`` if its QoS spec says ``block`` with a bound."""
        if subject in self._gates:
            return
        host = self._host
        assert host is not None
        spec = await lookup_qos(host.fabric, subject)
        self._gates[subject] = None
        if spec is None or spec.policy.kind is not Policy.BLOCK:
            return
        bound = spec.max_lag_items
        if bound is None and spec.max_lag_seconds is not None and spec.rate is not None:
            bound = max(1, int(spec.max_lag_seconds * spec.rate))
        if bound is None:
            host.log.debug("block_without_bound", subject=subject)
            return
        gate = self._gates[subject] = FlowGate(host.fabric, subject, bound)
        await host.task_group.start(gate.run)

    async def outbound(self, out: OutputItem, next: NextOut) -> None:
        gate = self._gates.get(out.subject)
        if gate is None and (split := partition_base(out.subject)) is not None:
            gate = self._gates.get(split[0])  # an output to one partition of a gated subject
        if gate is not None:
            publisher = self._publisher_of()
            await gate.wait(publisher.last_seq.get(out.subject, 0) + publisher.pending)
        await next(out)


class HistoryTap(Stage):
    """Keeps every output in the actor's history and serves it for replay."""

    name = "history_tap"

    def __init__(self, history: HistoryBuffer) -> None:
        self.history = history
        self.server: HistoryServer | None = None

    async def setup(self, host: Host) -> None:
        self.server = HistoryServer(host.fabric, host.id, self.history)
        await host.task_group.start(self.server.run)

    def stop_serving(self) -> None:
        """Stop answering replay requests (a migrated actor's new owner answers them)."""
        if self.server is not None:
            self.server.request_stop()

    async def outbound(self, out: OutputItem, next: NextOut) -> None:
        await next(out)
        self.history.add(out.subject, out.item, out.payload, out.headers)

    def close(self) -> None:
        self.history.close()


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
