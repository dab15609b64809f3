"""The demo's report: ``report.json``, ``report.md`` and PNG plots in one directory.

The plots (matplotlib, drawn off-screen; skipped with a note when it is not
installed): reconstruction quality over time (ePIE and the CNN against the
known object), items per second of each stage, lag per link, model versions
at the edge; faults are shaded on each. The Markdown names every number the
JSON holds that a reader looks for first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sims.demo._run import RunResult

__all__ = ["write_report"]

Series = Sequence[tuple[float, float]]


def _fault_spans(faults: Sequence[Mapping[str, Any]]) -> list[tuple[float, float, str]]:
    out = []
    for f in faults:
        at = f.get("at_s")
        if at is None:
            continue
        end = f.get("lifted_s")
        out.append((float(at), float(end if end is not None else at + 0.3), str(f["fault"])))
    return out


def _plot(
    path: Path,
    title: str,
    ylabel: str,
    lines: Mapping[str, Series],
    faults: list[tuple[float, float, str]],
    *,
    steps: bool = False,
    log: bool = False,
    marks: Mapping[str, float | None] | None = None,
) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    for start, end, _name in faults:
        ax.axvspan(start, max(end, start + 0.3), color="tab:red", alpha=0.15, lw=0)
    for name, series in lines.items():
        if not series:
            continue
        xs, ys = zip(*series, strict=True)
        if steps:
            ax.step(xs, ys, where="post", label=name)
        else:
            ax.plot(xs, ys, marker="." if len(xs) < 60 else None, label=name)
    for name, at in (marks or {}).items():
        if at is not None:
            ax.axvline(at, color="k", ls="--", lw=1)
            ax.annotate(name, (at, 1), xycoords=("data", "axes fraction"), fontsize=8, va="top")
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("seconds from the start (red: faults)")
    ax.set_ylabel(ylabel)
    if any(lines.values()):
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "-"
        return f"{value:.3g}{unit}"
    return f"{value}{unit}"


def write_report(out: Path, result: RunResult, digest: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and the plots into ``out``; return the JSON body.

    ``digest`` is what the plan made of the records: ``summary`` (name -> number),
    ``quality`` (``epie``/``cnn`` -> [(t, error)]), ``models`` ([(t, version)]),
    ``switch_s``, ``checks`` (name -> bool), ``latency`` (name -> seconds).
    """
    out.mkdir(parents=True, exist_ok=True)
    faults = [f.as_dict() for f in result.faults]
    spans = _fault_spans(faults)
    rates = _rates(result)
    lags: dict[str, list[tuple[float, float]]] = {}
    for sample in result.samples:
        for name, lag in sample.lags.items():
            if lag is not None:
                lags.setdefault(name, []).append((sample.t, float(lag)))
    plots: dict[str, str] = {}
    switch = digest.get("switch_s")
    specs: list[tuple[str, str, str, Mapping[str, Series], dict[str, Any]]] = [
        (
            "quality.png",
            "reconstruction error against the known object",
            "registered error",
            digest.get("quality", {}),
            {"marks": {"switch": switch}},
        ),
        ("rates.png", "items per second, per stage", "items/s", rates, {}),
        ("lag.png", "lag per link (items at the origin not yet copied)", "items", lags, {}),
        (
            "models.png",
            "model version at the edge",
            "version",
            {"at the edge": digest.get("models", [])},
            {"steps": True, "marks": {"switch": switch}},
        ),
    ]
    for name, title, ylabel, lines, extra in specs:
        if _plot(out / name, title, ylabel, lines, spans, **extra):
            plots[name.removesuffix(".png")] = name
    body = {
        "workflow": result.workflow,
        "seconds": result.seconds,
        "wall_s": round(result.wall_s, 2),
        "started_at": result.started_at,
        "stopped_early": result.stopped_early,
        "summary": digest.get("summary", {}),
        "checks": digest.get("checks", {}),
        "latency_s": digest.get("latency", {}),
        "switch_s": switch,
        "models": digest.get("models", []),
        "quality": digest.get("quality", {}),
        "faults": faults,
        "monitors": digest.get("monitors", []),
        "events": result.events,
        "twin": result.twin,
        "samples": [s.as_dict() for s in result.samples],
        "plots": plots,
    }
    (out / "report.json").write_text(json.dumps(body, indent=2, default=str))
    (out / "report.md").write_text(_markdown(body))
    return body


def _rates(result: RunResult) -> dict[str, list[tuple[float, float]]]:
    names = list(result.samples[0].counts) if result.samples else []
    out: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for a, b in zip(result.samples, result.samples[1:], strict=False):
        dt = b.t - a.t
        for n in names:
            x, y = a.counts.get(n), b.counts.get(n)
            if x is not None and y is not None and dt > 0:
                out[n].append((b.t, max(0, y - x) / dt))
    return out


def _markdown(body: Mapping[str, Any]) -> str:
    lines = [
        "# Ptychography on the twin",
        "",
        f"Workflow `{body['workflow']}` on twin `{body['twin'].get('twin')}` for "
        f"{_fmt(body['seconds'], ' s')} (wall {_fmt(body['wall_s'], ' s')}"
        f"{', stopped early: done' if body['stopped_early'] else ''}).",
        "",
        "| what | value |",
        "|---|---|",
    ]
    lines += [f"| {k.replace('_', ' ')} | {_fmt(v)} |" for k, v in body["summary"].items()]
    lines += [f"| switch to edge inference | {_fmt(body['switch_s'], ' s')} |"]
    lines += [
        f"| latency {k.replace('_', ' ')} | {_fmt(v, ' s')} |" for k, v in body["latency_s"].items()
    ]
    if body["checks"]:
        lines += ["", "## Checks", "", "| check | ok |", "|---|---|"]
        lines += [
            f"| {k.replace('_', ' ')} | {'yes' if v else '**NO**'} |"
            for k, v in body["checks"].items()
        ]
    lines += ["", "## Faults", ""]
    if body["faults"]:
        lines += [
            "| planned | applied | lifted | fault | pid | error |",
            "|---|---|---|---|---|---|",
        ]
        for f in body["faults"]:
            lines.append(
                f"| {_fmt(f['planned_s'])} | {_fmt(f['at_s'])} | {_fmt(f['lifted_s'])} | "
                f"{f['fault']} | {_fmt(f['pid'])} | {f['error'] or ''} |"
            )
    else:
        lines.append("none")
    lines += ["", "## Monitors", ""]
    if body["monitors"]:
        lines += [
            "| t | monitor | event | key | value | action | ok |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in body["monitors"]:
            action = f"{m.get('action', '')} {m.get('phase', '')}".strip()
            lines.append(
                f"| {_fmt(m['t'], ' s')} | {m['monitor']} | {m['kind']} | {m.get('key') or ''} | "
                f"{_fmt(m.get('value'))} | {action} | {_fmt(m.get('ok'))} |"
            )
    else:
        lines.append("no alert fired")
    links = body["twin"].get("predicted", {})
    if links:
        lines += ["", "## Links (predicted from probes)", ""]
        lines += [
            "| link | rtt | throughput | probes | down | prediction error |",
            "|---|---|---|---|---|---|",
        ]
        for name, p in links.items():
            lines.append(
                f"| {name} | {_fmt(p['rtt_s'], ' s')} | {_fmt(p['rate_bytes_s'], ' B/s')} | "
                f"{p['probes']} | {p['down_probes']} | {_fmt(p['prediction_mae_s'], ' s')} |"
            )
    if body["events"]:
        lines += ["", "## Supervision events", ""]
        lines += [", ".join(f"{k} {v}" for k, v in sorted(body["events"].items()))]
    if body["plots"]:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({file})" for name, file in body["plots"].items()]
    return "\n".join(lines) + "\n"
