"""A hypothesis state machine for workflows under faults, checked against a pure-Python model.

Subclass :class:`WorkflowMachine`, say which subjects the workflow reads and
writes, which faults it must survive, and give :meth:`WorkflowMachine.model`
— what the outputs of one key must be, given that key's inputs in order.
Hypothesis then runs examples whose rules publish keyed traffic, inject
faults and heal, in any interleaving; at the end of each example the machine
heals everything, waits for the workflow to be running and caught up, and
checks that **every input's effect is present exactly once, in per-key
order, equal to the model's**, that no supervisor gave up and that no child
was left dead. Each example adds its figures to the rig's
:class:`~diaspora.testing._report.ReliabilityReport`.

The workflow must emit exactly one output per input on ``output_subject``
that names the input it answers: by default ``data["key"]`` and
``data["i"]`` (override :meth:`WorkflowMachine.identify`). Inputs are
``{"key": k, "i": n, "value": v}`` (override :meth:`WorkflowMachine.encode`),
with ``Diaspora-Key: k`` and ``Nats-Msg-Id: k:n``.

Examples share one :class:`~diaspora.testing._rig.FaultRig` (server, link,
running workflow), set as the class attribute ``rig``; each example uses keys
of its own. Rules are synchronous: they call into the rig's event loop
through its blocking portal.

>>> class Doubling(WorkflowMachine):
...     input_subject, output_subject = "numbers", "doubled"
...     def model(self, key, values):
...         return [{"key": key, "i": i, "x": 2 * v} for i, v in enumerate(values)]
>>> Doubling().model("k", [1, 2])
[{'key': 'k', 'i': 0, 'x': 2}, {'key': 'k', 'i': 1, 'x': 4}]
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import anyio
from hypothesis import currently_in_test_context, event, note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from diaspora import codec
from diaspora.errors import DecodeError
from diaspora.events import GaveUp
from diaspora.fabric._reader import read_stored
from diaspora.log import get_logger
from diaspora.testing._faultspec import FaultKind, FaultSpec, Injected
from diaspora.testing._report import ExampleResult
from diaspora.testing._rig import FaultRig, digest
from diaspora.testing._traffic import check_outputs, publish_input, recovery_time
from diaspora.testing._waiting import wait_until
from diaspora.testing._workflow import WorkflowError

__all__ = ["Output", "WorkflowMachine"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Output:
    """One output as stored: stream sequence, server timestamp, decoded data."""

    seq: int
    timestamp: float
    data: Any


@dataclass(slots=True)
class _Collected:
    """Outputs read so far in one example, by key."""

    cursor: int
    by_key: dict[str, list[Output]] = field(default_factory=lambda: defaultdict(list))
    foreign: list[Output] = field(default_factory=list)
    late: list[Output] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class WorkflowMachine(RuleBasedStateMachine):
    """Traffic, faults and heals against a workflow; the final check against a model."""

    #: The shared rig (set it before running the machine).
    rig: ClassVar[FaultRig]
    #: Where inputs are published, and where the workflow's one output per input appears.
    input_subject: ClassVar[str]
    output_subject: ClassVar[str]
    #: Input values, keys per example and the largest burst one rule publishes.
    values: ClassVar[st.SearchStrategy[Any]] = st.integers(-1000, 1000)
    key_count: ClassVar[int] = 3
    burst: ClassVar[int] = 20
    #: The faults the workflow must survive, per layer (``None``: none of that layer).
    actor_faults: ClassVar[st.SearchStrategy[FaultSpec] | None] = None
    process_faults: ClassVar[st.SearchStrategy[FaultSpec] | None] = None
    server_faults: ClassVar[st.SearchStrategy[FaultSpec] | None] = None
    link_faults: ClassVar[st.SearchStrategy[FaultSpec] | None] = None
    #: Pauses a rule may take (seconds) to let timers, restarts and traffic run.
    idle_seconds: ClassVar[Sequence[float]] = (0.05, 0.3, 1.0)
    #: Seconds the final check waits for the workflow to run and catch up.
    settle_timeout: ClassVar[float] = 60.0
    #: Seconds a server fault waits for an earlier one to end before healing it.
    server_wait: ClassVar[float] = 10.0

    # -- the model (override) -------------------------------------------------------------

    def model(self, key: str, values: list[Any]) -> list[Any]:
        """The outputs the workflow must produce for ``key``, one per value, in order, in
        the shapes :mod:`diaspora.codec` decodes to (lists, not tuples)."""
        raise NotImplementedError(f"{type(self).__name__} must define model(key, values)")

    def closing_values(self, key: str) -> list[Any]:
        """Values published to every key of an example before its check (default: none)."""
        return []

    def encode(self, key: str, index: int, value: Any) -> Any:
        """The payload of the ``index``-th input of ``key``."""
        return {"key": key, "i": index, "value": value}

    def identify(self, data: Any) -> tuple[str, int]:
        """Which input an output answers: ``(key, index)``."""
        return data["key"], data["i"]

    # -- the example ------------------------------------------------------------------------

    def __init__(self) -> None:
        super().__init__()
        self.example = 0
        self.keys: list[str] = []
        self.inputs: dict[str, list[Any]] = {}
        self.sent_at: dict[tuple[str, int], float] = {}
        self.first_record = 0
        self.cursor = 1
        self.started_at = 0.0
        self.began = False
        self._notes: list[str] = []
        self._log = get_logger(machine=type(self).__name__)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Run ``await fn(*args)`` in the rig's event loop."""
        return self.rig.call(fn, *args, timeout=timeout)

    @initialize()
    def begin(self) -> None:
        rig = getattr(type(self), "rig", None)
        if rig is None:
            raise RuntimeError(
                f"{type(self).__name__}.rig is not set: run the machine as "
                "type(name, (Machine,), {'rig': rig}) inside `with FaultRig(...) as rig:`"
            )
        self.example = rig.begin_example()
        self.keys = [f"{rig.run_id}-{self.example}-{k}" for k in range(self.key_count)]
        self.inputs = {key: [] for key in self.keys}
        self.first_record = len(rig.injector.records)
        self.cursor = self.call(self._prepare)
        self.started_at = time.time()
        self.began = True

    async def _prepare(self) -> int:
        fabric = self.rig.fabric
        await fabric.ensure_stream(self.input_subject)
        await fabric.require_stream(self.output_subject)
        _, last = await fabric.stream_bounds(self.output_subject)
        return last + 1

    @rule(data=st.data())
    def publish(self, data: st.DataObject) -> None:
        """Publish a burst of values to one key."""
        key = data.draw(st.sampled_from(self.keys), label="key")
        self.send(key, self._burst(data))

    def send(self, key: str, values: list[Any]) -> None:
        """Publish ``values`` to ``key`` (one of :attr:`keys`), in order.

        With :meth:`inject`, what the rules use; call them directly, after
        :meth:`begin` and before :meth:`teardown`, to script an example.
        """
        self.call(self._publish, key, values)

    @rule(data=st.data())
    def publish_all(self, data: st.DataObject) -> None:
        """Publish a burst of values to every key, interleaved."""
        bursts = [(key, self._burst(data)) for key in self.keys]
        self.call(self._publish_interleaved, bursts)

    def _burst(self, data: st.DataObject) -> list[Any]:
        size = data.draw(st.integers(1, self.burst), label="burst")
        return [data.draw(self.values, label="value") for _ in range(size)]

    async def _publish_interleaved(self, bursts: list[tuple[str, list[Any]]]) -> None:
        longest = max(len(values) for _, values in bursts)
        for n in range(longest):
            for key, values in bursts:
                if n < len(values):
                    await self._publish(key, [values[n]])

    async def _publish(self, key: str, values: list[Any]) -> None:
        publisher = self.rig.publisher
        sent = self.inputs[key]
        for value in values:
            index = len(sent)
            sent.append(value)
            self.sent_at[(key, index)] = time.time()
            await publish_input(
                publisher, self.input_subject, key, index, self.encode(key, index, value)
            )

    @precondition(lambda self: self.actor_faults is not None)
    @rule(data=st.data())
    def actor_fault(self, data: st.DataObject) -> None:
        """Crash or hang an actor at its next message (the order waits for the actor to be
        reachable: server up, link open, actor running)."""
        assert self.actor_faults is not None
        self.inject(data.draw(self.actor_faults, label="fault"))

    @precondition(lambda self: self.process_faults is not None)
    @rule(data=st.data())
    def process_fault(self, data: st.DataObject) -> None:
        """Kill or freeze an actor's process (a kill waits for the process to be running)."""
        assert self.process_faults is not None
        self.inject(data.draw(self.process_faults, label="fault"))

    @precondition(lambda self: self.server_faults is not None)
    @rule(data=st.data())
    def server_fault(self, data: st.DataObject) -> None:
        """Kill, pause or restart the server, once an earlier server fault has ended.

        Whether the server is up depends on timers, so it must not be a
        precondition (hypothesis needs the same rules enabled when it replays
        the same steps): the rule waits for the server instead, up to
        ``server_wait`` seconds, then heals it.
        """
        assert self.server_faults is not None
        fault = data.draw(self.server_faults, label="fault")
        self.call(self._server_ready)
        self.inject(fault)

    async def _server_ready(self) -> None:
        injector = self.rig.injector
        try:
            await wait_until(lambda: injector.server_up, timeout=self.server_wait)
        except TimeoutError:
            self._log.warning("server_fault_still_in_force", waited_s=self.server_wait)
            await injector.heal()

    @precondition(lambda self: self.link_faults is not None and self.rig.proxy is not None)
    @rule(data=st.data())
    def link_fault(self, data: st.DataObject) -> None:
        """Degrade or break the link between the workflow and the server."""
        assert self.link_faults is not None
        self.inject(data.draw(self.link_faults, label="fault"))

    def inject(self, fault: FaultSpec) -> Injected:
        """Inject ``fault`` through the rig's injector (noted in the example's log)."""
        record: Injected = self.call(self.rig.injector.apply, fault)
        self._note(f"injected {fault.describe()} at {record.at - self.started_at:.3f}s")
        if currently_in_test_context():
            event(f"fault: {fault.kind.value}")
        return record

    def _note(self, line: str) -> None:
        """A note hypothesis prints with a failing example (kept when run by hand)."""
        if currently_in_test_context():
            note(line)
        else:
            self._notes.append(line)

    @rule()
    def heal(self) -> None:
        """Lift every fault in force."""
        self.call(self.rig.injector.heal)

    @rule(data=st.data())
    def idle(self, data: st.DataObject) -> None:
        """Let time pass (timers lift faults, supervisors restart, traffic flows)."""
        seconds = data.draw(st.sampled_from(list(self.idle_seconds)), label="seconds")
        self.call(anyio.sleep, seconds)

    # -- the final check ----------------------------------------------------------------------

    def teardown(self) -> None:
        if not self.began:
            return
        result = self.call(self._check, timeout=self.settle_timeout * 3 + 60)
        if currently_in_test_context():
            for line in self._notes:
                note(line)
        self.rig.report.add_example(result)
        if not result.ok:
            told = "" if currently_in_test_context() else " | " + "; ".join(self._notes)
            raise AssertionError(
                f"example {self.example}: {result.lost} lost, {result.duplicated} duplicated, "
                f"{result.reordered} out of order, {result.wrong} wrong; "
                + "; ".join(result.problems)
                + told
            )

    async def _check(self) -> ExampleResult:
        rig = self.rig
        injector = rig.injector
        began = time.monotonic()
        phases: dict[str, float] = {}

        def lap(phase: str) -> None:
            phases[phase] = round(time.monotonic() - began - sum(phases.values()), 3)

        problems: list[str] = []
        await injector.heal()
        lap("heal_s")
        try:
            await rig.workflow.wait_running(self.settle_timeout)
        except WorkflowError as exc:
            problems.append(str(exc))
        lap("running_s")
        for key in self.keys:
            closing = self.closing_values(key)
            if closing:
                await self._publish(key, closing)
        with anyio.move_on_after(self.settle_timeout) as scope:
            await rig.publisher.flush()
        if scope.cancelled_caught:
            problems.append(f"inputs not acknowledged within {self.settle_timeout}s")
        lap("flush_s")
        expected = {key: self.model(key, values) for key, values in self.inputs.items()}
        collected = _Collected(self.cursor)
        try:
            await self._collect(collected, expected)
        except TimeoutError:
            problems.append(f"outputs incomplete after {self.settle_timeout}s")
        lap("collect_s")
        records = injector.records[self.first_record :]
        since = rig.workflow.events_since(self.started_at)
        gave_up = [e for e in since if isinstance(e, GaveUp)]
        if gave_up:
            problems.append(f"supervisor gave up: {gave_up}")
        if rig.workflow.ended:
            problems.append(f"the workflow ended: {rig.workflow.error!r}")
        result = self._compare(expected, collected, records, problems)
        rig.record_example(expected)
        self._notes.append(f"check took {phases} ({len(collected.errors)} read errors)")
        self._log.info(
            "example_checked",
            example=self.example,
            ok=result.ok,
            messages=result.messages,
            faults=[r.fault.describe() for r in records],
            recoveries=result.recoveries,
            duration_s=result.duration_s,
            **phases,
        )
        return result

    async def _collect(self, collected: _Collected, expected: dict[str, list[Any]]) -> None:
        """Read new outputs until every expected one is there, or ``settle_timeout`` passes."""
        want = {key: len(outputs) for key, outputs in expected.items()}
        prefix = f"{self.rig.run_id}-"
        deadline = time.monotonic() + self.settle_timeout
        while True:
            try:
                async for stored in read_stored(
                    self.rig.fabric, self.output_subject, start_seq=collected.cursor
                ):
                    collected.cursor = stored.seq + 1
                    self._sort(collected, stored.seq, stored.timestamp, stored.payload, prefix)
            except Exception as exc:  # server down, link trouble: read again
                collected.errors.append(repr(exc))
            if all(
                len({self._index(o) for o in collected.by_key.get(key, [])}) >= n
                for key, n in want.items()
            ):
                return
            if time.monotonic() > deadline:
                raise TimeoutError
            await anyio.sleep(0.05)

    def _sort(
        self, collected: _Collected, seq: int, timestamp: float, payload: bytes, prefix: str
    ) -> None:
        try:
            data = codec.decode(payload)
            key, _ = self.identify(data)
        except (DecodeError, KeyError, TypeError, ValueError):
            collected.foreign.append(Output(seq, timestamp, payload))
            return
        output = Output(seq, timestamp, data)
        if key in self.inputs:
            collected.by_key[key].append(output)
        elif isinstance(key, str) and key.startswith(prefix):
            collected.late.append(output)  # an earlier example's key: a late duplicate
        # anything else belongs to someone else

    def _index(self, output: Output) -> int:
        return self.identify(output.data)[1]

    def _compare(
        self,
        expected: dict[str, list[Any]],
        collected: _Collected,
        records: list[Injected],
        problems: list[str],
    ) -> ExampleResult:
        got = {
            key: [(self._index(o), o.data) for o in collected.by_key.get(key, [])]
            for key in expected
        }
        check = check_outputs(expected, got)
        problems.extend(check.problems)
        duplicated = check.duplicated
        arrival: dict[tuple[str, int], float] = {}
        for key in expected:
            for output in collected.by_key.get(key, []):
                arrival.setdefault((key, self._index(output)), output.timestamp)
        if collected.late:
            duplicated += len(collected.late)
            problems.append(
                f"{len(collected.late)} outputs for earlier examples' keys arrived late "
                f"(duplicates), e.g. {collected.late[0].data!r}"
            )
        recoveries = _recoveries(records, arrival, self.sent_at, self.rig.injector.lifted_at)
        last_sent = max(self.sent_at.values(), default=self.started_at)
        catch_up = max(arrival.values(), default=last_sent) - last_sent
        return ExampleResult(
            messages=sum(len(v) for v in self.inputs.values()),
            outputs=sum(len(v) for v in collected.by_key.values()),
            lost=check.lost,
            duplicated=duplicated,
            reordered=check.reordered,
            wrong=check.wrong,
            faults=dict(Counter(r.kind.value for r in records)),
            recoveries=recoveries,
            catch_up_s=round(max(0.0, catch_up), 3),
            duration_s=round(time.time() - self.started_at, 3),
            problems=problems,
        )

    # -- the whole run ---------------------------------------------------------------------

    @classmethod
    def sweep(cls, rig: FaultRig) -> dict[str, int]:
        """Read every output of the run once more and check every example's keys against the
        fingerprints :meth:`FaultRig.record_example` kept: catches duplicates that arrived
        after their example's check. Returns (and records in the report) the figures."""
        return rig.call(cls._sweep, rig, timeout=600)

    @classmethod
    async def _sweep(cls, rig: FaultRig) -> dict[str, int]:
        outputs: dict[str, list[Any]] = defaultdict(list)
        prefix = f"{rig.run_id}-"
        machine = cls()
        async for stored in read_stored(rig.fabric, cls.output_subject):
            try:
                data = codec.decode(stored.payload)
                key, _ = machine.identify(data)
            except (DecodeError, KeyError, TypeError, ValueError):
                continue
            if isinstance(key, str) and key.startswith(prefix):
                outputs[key].append(data)
        lost = duplicated = wrong = checked = 0
        for key, (count, fingerprint) in rig.ledger.items():
            got = outputs.pop(key, [])
            checked += len(got)
            indices = [machine.identify(d)[1] for d in got]
            duplicated += len(indices) - len(set(indices))
            lost += count - len(set(indices) & set(range(count)))
            if len(got) == count and digest(got) != fingerprint:
                wrong += 1
        unexpected = sum(len(v) for v in outputs.values())  # keys of examples not checked
        figures = {
            "keys": len(rig.ledger),
            "outputs": checked,
            "lost": lost,
            "duplicated": duplicated,
            "wrong_keys": wrong,
            "unchecked_outputs": unexpected,
        }
        rig.report.extra["sweep"] = figures
        return figures


def _recoveries(
    records: list[Injected],
    arrival: dict[tuple[str, int], float],
    sent_at: dict[tuple[str, int], float],
    lifted_at: Callable[[Injected], float | None],
) -> list[tuple[str, float]]:
    """Per fault: from its end to the output of the first input sent after that end."""
    sent = sorted((t, key_index) for key_index, t in sent_at.items())
    out = []
    for record in records:
        if record.kind is FaultKind.HEAL_LINK:
            continue
        end = lifted_at(record)
        seconds = None if end is None else recovery_time(end, sent, arrival)
        if seconds is not None:
            out.append((record.kind.value, seconds))
    return out
