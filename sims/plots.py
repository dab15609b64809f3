"""Plots of a run next to its JSON report: lag per stream, recovery per fault, throughput.

:func:`write_plots` reads what a report holds (the progress samples taken
each second, the fault log) and writes three PNG files beside it,
``<report>.lag.png``, ``<report>.recovery.png`` and ``<report>.throughput.png``,
with the faults shaded where they were in force. It needs matplotlib (the
``dev`` extra); without it no plot is written and the run says so in its log.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_plots"]


def _shade(ax: Any, faults: Sequence[Mapping[str, Any]]) -> None:
    for fault in faults:
        start, end = fault.get("at_s"), fault.get("lifted_at_s")
        if start is None:
            continue
        end = start if end is None else end
        if end > start:
            ax.axvspan(start, end, color="#D55E00", alpha=0.12, lw=0)
        else:
            ax.axvline(start, color="#D55E00", alpha=0.5, lw=1)


def write_plots(report: Mapping[str, Any], json_path: Path) -> list[Path]:
    """Write the run's plots beside ``json_path``; the files written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    extra = report.get("extra", {})
    samples = [s for s in extra.get("progress", []) if s.get("outputs") is not None]
    faults = list(extra.get("fault_log", []))
    name = str(report.get("name", json_path.stem))
    stem = json_path.with_suffix("")
    written = []
    t = [s["t_s"] for s in samples]

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(t, [s["acked"] - s["outputs"] for s in samples], label="input stream: no output yet")
    ax.plot(t, [s["sent"] - s["acked"] for s in samples], label="publisher: sent, not stored yet")
    _shade(ax, faults)
    ax.set(title=f"{name}: lag per stream", xlabel="seconds since the first input",
           ylabel="items behind")  # fmt: skip
    ax.legend(loc="upper right", fontsize=8)
    written.append(_save(fig, plt, stem, "lag"))

    fig, ax = plt.subplots(figsize=(7, 3.2))
    labels = [f"{f['kind']}\n{f.get('target') or ''}@{f.get('at_s', 0):.1f}s" for f in faults]
    values = [f.get("recovery_s") or 0.0 for f in faults]
    bars = ax.bar(range(len(faults)), values, color="#0072B2")
    for bar, fault in zip(bars, faults, strict=True):
        if fault.get("recovery_s") is None:
            bar.set_hatch("//")
            bar.set_color("#999999")
    ax.set_xticks(range(len(faults)), labels, fontsize=7)
    ax.set(title=f"{name}: recovery per fault (grey: not measured)", ylabel="seconds")
    written.append(_save(fig, plt, stem, "recovery"))

    fig, ax = plt.subplots(figsize=(7, 3.2))
    rate = [
        (b["outputs"] - a["outputs"]) / (b["t_s"] - a["t_s"])
        for a, b in itertools.pairwise(samples)
        if b["t_s"] > a["t_s"]
    ]
    ax.plot(t[1 : len(rate) + 1], rate, color="#009E73", label="outputs stored per second")
    _shade(ax, faults)
    ax.set(title=f"{name}: throughput", xlabel="seconds since the first input",
           ylabel="outputs/s")  # fmt: skip
    ax.legend(loc="upper right", fontsize=8)
    written.append(_save(fig, plt, stem, "throughput"))
    return written


def _save(fig: Any, plt: Any, stem: Path, what: str) -> Path:
    path = stem.parent / f"{stem.name}.{what}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
