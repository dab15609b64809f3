"""Where a run's report goes, and the short table printed at the end of a run.

The report itself is a :class:`~diaspora.testing.ReliabilityReport` (one
example: the run), its scenario-specific sections under ``extra``; see
``sims/README.md`` for every field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from diaspora.testing import ReliabilityReport

__all__ = ["REPORTS", "default_report_path", "summarize"]

#: Where reports go by default: ``sims/reports/<scenario name>.json``.
REPORTS: Final = Path(__file__).resolve().parent / "reports"


def default_report_path(name: str) -> Path:
    """``sims/reports/<name>.json``."""
    return REPORTS / f"{name}.json"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def summarize(report: ReliabilityReport) -> str:
    """A few lines for a terminal: totals, latency, one row per fault, the first problems."""
    extra = report.extra
    orphans = extra.get("orphans", [])
    verdict = "OK" if report.ok and not orphans else "FAILED"
    lines = [
        f"{report.name} (seed {extra.get('seed')}): {verdict}: {report.messages_sent} sent, "
        f"{report.outputs_checked} outputs checked",
        f"  lost {report.lost}  duplicated {report.duplicated}  reordered {report.reordered}  "
        f"wrong {report.wrong}  orphans {len(orphans)}",
    ]
    latency = extra.get("latency_s", {})
    if latency.get("measured"):
        lines.append(
            f"  latency p50 {latency['p50']:.3f}s  p99 {latency['p99']:.3f}s  "
            f"max {latency['max']:.3f}s  catch-up {report.max_catch_up_s:.2f}s"
        )
    log = extra.get("fault_log", [])
    if log:
        header = f"  {'at':>6}  {'fault':<34} {'target':<16} {'pid':>7}  {'lifted':>6}  recovery"
        lines += ["", header]
        for entry in log:
            describe = entry["kind"] + "".join(
                f" {k}={entry[k]:g}" for k in ("seconds", "duration", "rate") if k in entry
            )
            pid = entry.get("pid")
            lines.append(
                f"  {entry['at_s']:>6.2f}  {describe:<34} {entry['target']:<16} "
                f"{'-' if pid is None else pid:>7}  {_seconds(entry['lifted_at_s']):>6}  "
                f"{_seconds(entry['recovery_s']):>8}"
            )
    if report.problems:
        lines += ["", f"  problems ({len(report.problems)}):"]
        lines += [f"    - {problem}" for problem in report.problems[:10]]
    return "\n".join(lines)
