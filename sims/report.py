"""Where a run's report goes, and the short table printed at the end of a run.

The report itself is a :class:`~diaspora.testing.ReliabilityReport` (one
example: the run), its scenario-specific sections under ``extra``; see
``sims/README.md`` for every field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from diaspora.testing import ReliabilityReport

__all__ = [
    "RECOVERY",
    "REPORTS",
    "default_report_path",
    "recovery_by_kind",
    "recovery_table",
    "summarize",
    "unplanned_count",
    "worst_by_kind",
]

#: Where reports go by default: ``sims/reports/<scenario name>.json``.
REPORTS: Final = Path(__file__).resolve().parent / "reports"
#: Recovery per fault kind over the runs the README quotes (``python -m sims recovery``).
RECOVERY: Final = Path(__file__).resolve().parent / "recovery.json"


def default_report_path(name: str) -> Path:
    """``sims/reports/<name>.json``."""
    return REPORTS / f"{name}.json"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def recovery_by_kind(report: ReliabilityReport) -> dict[str, dict[str, float | int]]:
    """Per fault kind, from the fault log: how many recoveries were measured, their mean
    and their max (seconds), kinds in the order they first happened.

    >>> report = ReliabilityReport(name="demo")
    >>> report.extra["fault_log"] = [
    ...     {"kind": "crash", "recovery_s": 0.5}, {"kind": "kill_server", "recovery_s": 2.0},
    ...     {"kind": "crash", "recovery_s": 1.5}, {"kind": "crash", "recovery_s": None}]
    >>> by_kind = recovery_by_kind(report)
    >>> list(by_kind), by_kind["crash"]
    (['crash', 'kill_server'], {'n': 2, 'mean_s': 1.0, 'max_s': 1.5})
    """
    times: dict[str, list[float]] = {}
    for entry in report.extra.get("fault_log", []):
        seconds = entry.get("recovery_s")
        if seconds is not None:
            times.setdefault(entry["kind"], []).append(float(seconds))
    return {
        kind: {"n": len(ts), "mean_s": round(sum(ts) / len(ts), 3), "max_s": round(max(ts), 3)}
        for kind, ts in times.items()
    }


def unplanned_count(report: ReliabilityReport) -> int:
    """Restarts no fault explains plus actor crashes that were not injected."""
    found = report.extra.get("unplanned", {})
    return int(sum(found.get("restarts", {}).values())) + len(found.get("crashes", []))


def summarize(report: ReliabilityReport) -> str:
    """A few lines for a terminal: totals, latency, one row per fault, recovery per fault
    kind, unplanned restarts and crashes, the first problems."""
    extra = report.extra
    orphans = extra.get("orphans", [])
    verdict = "OK" if report.ok and not orphans else "FAILED"
    if verdict == "OK" and unplanned_count(report):
        verdict = "OK, WITH UNPLANNED RESTARTS OR CRASHES"
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
    by_kind = recovery_by_kind(report)
    if by_kind:
        lines += ["", f"  {'recovery by fault kind':<24} {'n':>3}  {'mean':>6}  {'max':>6}"]
        lines += [
            f"  {kind:<24} {row['n']:>3}  {row['mean_s']:>6.2f}  {row['max_s']:>6.2f}"
            for kind, row in by_kind.items()
        ]
    found = extra.get("unplanned", {})
    if unplanned_count(report):
        restarts = ", ".join(f"{child} x{n}" for child, n in found.get("restarts", {}).items())
        lines += ["", f"  unplanned: restarts {restarts or 'none'}"]
        crashes = found.get("crashes", [])
        lines += [f"    crashed: {crash}" for crash in crashes[:5]]
        if len(crashes) > 5:
            lines.append(f"    ... and {len(crashes) - 5} more crashes")
    if report.problems:
        lines += ["", f"  problems ({len(report.problems)}):"]
        lines += [f"    - {problem}" for problem in report.problems[:10]]
    return "\n".join(lines)


def worst_by_kind(reports: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Over the JSON reports of several runs, per fault kind: the worst recovery (``max_s``,
    with the run it came from), the mean over every recovery measured and how many
    (``n``), kinds sorted by name.

    >>> run = {"name": "demo", "extra": {"seed": 1, "fault_log": [
    ...     {"kind": "crash", "recovery_s": 0.5}, {"kind": "crash", "recovery_s": 1.5}]}}
    >>> worst_by_kind([run])
    {'crash': {'n': 2, 'mean_s': 1.0, 'max_s': 1.5, 'worst_in': 'demo (seed 1)'}}
    """
    times: dict[str, list[tuple[float, str]]] = {}
    for report in reports:
        extra = report.get("extra", {})
        run = f"{report.get('name')} (seed {extra.get('seed')})"
        for entry in extra.get("fault_log", []):
            if entry.get("recovery_s") is not None:
                times.setdefault(entry["kind"], []).append((float(entry["recovery_s"]), run))
    out = {}
    for kind in sorted(times):
        values = times[kind]
        worst = max(values)
        out[kind] = {
            "n": len(values),
            "mean_s": round(sum(v for v, _ in values) / len(values), 3),
            "max_s": round(worst[0], 3),
            "worst_in": worst[1],
        }
    return out


def recovery_table(worst: Mapping[str, Mapping[str, Any]]) -> str:
    """:func:`worst_by_kind` as a Markdown table (what the README shows)."""
    lines = [
        "| fault kind | recoveries | mean (s) | worst (s) | worst in |",
        "|---|---:|---:|---:|---|",
    ]
    for kind, row in worst.items():
        lines.append(
            f"| `{kind}` | {row['n']} | {row['mean_s']:.2f} | {row['max_s']:.2f} | "
            f"{row['worst_in']} |"
        )
    return "\n".join(lines)
