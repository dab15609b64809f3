"""The report of a fault-injection run: what was injected, what was checked, what went wrong.

A :class:`ReliabilityReport` is filled in by a
:class:`~diaspora.testing.machine.WorkflowMachine` example by example and
written as JSON at the end, so that every run — CI or soak — leaves numbers
behind: examples, faults of each kind, messages sent, outputs checked, lost
and duplicated outputs (both must be 0) and the recovery times.

>>> report = ReliabilityReport(name="demo")
>>> report.add_example(ExampleResult(messages=10, outputs=10, faults={"crash": 1},
...                                  recoveries=[("crash", 0.4), ("kill_server", 1.2)]))
>>> report.examples, report.faults, report.max_recovery_s, report.ok
(1, {'crash': 1}, 1.2, True)
>>> report.max_recovery_by_kind
{'crash': 0.4, 'kill_server': 1.2}
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ExampleResult", "ReliabilityReport"]


@dataclass(frozen=True, slots=True)
class ExampleResult:
    """What one example checked.

    ``lost``: expected outputs missing; ``duplicated``: outputs present more
    than once (or for an input of an earlier example); ``reordered``: outputs
    of a key out of input order; ``wrong``: outputs whose content differs from
    the model's. ``recoveries`` are (fault kind, seconds from the end of the
    fault to the output of the first input sent after that end);
    ``catch_up_s`` the seconds from the last input to the last output.
    """

    messages: int = 0
    outputs: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    wrong: int = 0
    faults: Mapping[str, int] = field(default_factory=dict)
    recoveries: Sequence[tuple[str, float]] = ()
    catch_up_s: float = 0.0
    duration_s: float = 0.0
    problems: Sequence[str] = ()

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.wrong or self.problems)


@dataclass(slots=True)
class ReliabilityReport:
    """Totals over a run of examples; :meth:`write` saves them as JSON."""

    name: str = "reliability"
    started_at: float = field(default_factory=time.time)
    examples: int = 0
    failed_examples: int = 0
    messages_sent: int = 0
    outputs_checked: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    wrong: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    recoveries: int = 0
    max_recovery_s: float = 0.0
    mean_recovery_s: float = 0.0
    max_recovery_by_kind: dict[str, float] = field(default_factory=dict)
    max_catch_up_s: float = 0.0
    duration_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    #: Free-form extra sections (the final sweep, settings, the workflow...).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, reordered or wrong, and no problem noted."""
        return not (self.lost or self.duplicated or self.reordered or self.wrong or self.problems)

    def add_example(self, result: ExampleResult) -> None:
        """Add one example's figures to the totals."""
        self.examples += 1
        self.failed_examples += not result.ok
        self.messages_sent += result.messages
        self.outputs_checked += result.outputs
        self.lost += result.lost
        self.duplicated += result.duplicated
        self.reordered += result.reordered
        self.wrong += result.wrong
        self.faults = dict(Counter(self.faults) + Counter(result.faults))
        if result.recoveries:
            times = [seconds for _, seconds in result.recoveries]
            total = self.mean_recovery_s * self.recoveries + sum(times)
            self.recoveries += len(times)
            self.mean_recovery_s = round(total / self.recoveries, 3)
            self.max_recovery_s = round(max(self.max_recovery_s, *times), 3)
            for kind, seconds in result.recoveries:
                best = max(self.max_recovery_by_kind.get(kind, 0.0), seconds)
                self.max_recovery_by_kind[kind] = round(best, 3)
        self.max_catch_up_s = round(max(self.max_catch_up_s, result.catch_up_s), 3)
        self.problems.extend(result.problems)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["duration_s"] = round(time.time() - self.started_at, 3)
        out["faults_total"] = sum(self.faults.values())
        return out

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the report as indented JSON to ``path`` (directories created); return it."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n")
        return target
