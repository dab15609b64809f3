"""The ``python -m sims`` command.

``python -m sims run FILE|NAME [--report PATH] [--seed N]``
    Run one scenario — a file, or a name ``sims list`` shows (a scenario of
    ``sims/scenarios``) — print progress lines (stderr; on a terminal, a bar
    as well) and a summary table (stdout: recovery per fault kind, unplanned
    restarts and crashes), write the JSON report (default
    ``sims/reports/<name>.json``) and, beside it, PNG plots of lag per stream,
    recovery per fault and throughput (:mod:`sims.plots`). Exit status:

    - 0: nothing lost, duplicated, reordered or wrong, no problem noted, and
      no restart or crash that no fault asked for;
    - 1: something lost, duplicated, reordered or wrong, or a problem noted
      (orphan processes, a fault not injected, a supervisor that gave up...);
    - 2: a usage or scenario-file error;
    - 3: the outputs are right, but the run saw unplanned restarts (a child
      restarted more often than the faults aimed at it explain) or actor
      crashes that were not injected (the summary lists them).

``python -m sims recovery REPORT... [--write PATH]``
    Recovery per fault kind over the JSON reports of several runs (recoveries,
    mean, worst and the run it came from) as a Markdown table;
    ``--write`` also keeps it as JSON (``sims/recovery.json`` is what the
    README quotes).

``python -m sims list [DIR]``
    The scenarios of ``DIR`` (default ``sims/scenarios``), one a line: name
    and description.

``python -m sims check FILE|NAME... [--seed N]``
    Validate scenario files (with their trees and models) without running
    them, and show each one's fault schedule. Exit status 0, or 2 and the
    first error on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import anyio

import sims.predict
from diaspora.errors import ConfigError, DiasporaError
from diaspora.log import configure_logging, get_logger
from sims.plots import write_plots
from sims.report import (
    default_report_path,
    recovery_table,
    summarize,
    unplanned_count,
    worst_by_kind,
)
from sims.runner import run_scenario
from sims.scenario import Scenario, load_scenario
from sims.schedule import build_schedule

__all__ = ["SCENARIOS", "main", "scenario_path"]

#: The scenarios shipped with sims.
SCENARIOS: Final = Path(__file__).resolve().parent / "scenarios"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNPLANNED = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sims", description="Fault scenarios run from files against real servers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one scenario and write its JSON report")
    run.add_argument("file", help="a scenario's TOML file, or a name `sims list` shows")
    run.add_argument("--report", help="where to write the report (default sims/reports/NAME.json)")
    run.add_argument("--seed", type=int, help="seed of the random draws (default: the file's)")
    recovery = sub.add_parser("recovery", help="recovery per fault kind over run reports")
    recovery.add_argument("reports", nargs="+", help="JSON reports written by `sims run`")
    recovery.add_argument("--write", help="also write the figures as JSON to this path")
    listing = sub.add_parser("list", help="list scenarios with their descriptions")
    listing.add_argument("dir", nargs="?", default=str(SCENARIOS), help="a folder of scenarios")
    check = sub.add_parser("check", help="validate scenario files without running them")
    check.add_argument("files", nargs="+", help="scenario TOML files or names")
    check.add_argument("--seed", type=int, help="seed for the random faults shown")
    predict = sub.add_parser("predict", help="a shrinking consumer: monitor lead time, precision")
    predict.add_argument("--seeds", type=int, default=5, help="seeded ramps (and runs without)")
    predict.add_argument("--link", action="store_true", help="a degrading link, not a consumer")
    return parser


def _named(folder: Path) -> list[tuple[str, str, Path]]:
    """``(name, description, path)`` of every scenario file of ``folder``, by file name."""
    out = []
    for path in sorted(folder.glob("*.toml")):
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            out.append((path.stem, f"(unreadable: {exc})", path))
            continue
        name = str(document.get("name", path.stem))
        out.append((name, str(document.get("description", "(no description)")), path))
    return out


def scenario_path(file: str) -> Path:
    """``file`` if it is one, else the scenario of ``sims/scenarios`` that ``sims list``
    shows under that name."""
    path = Path(file)
    if path.exists() or path.suffix == ".toml" or "/" in file:
        return path
    for name, _, found in _named(SCENARIOS):
        if name == file:
            return found
    names = ", ".join(name for name, _, _ in _named(SCENARIOS))
    raise ConfigError(
        f"{file}: neither a scenario file nor a scenario name; `python -m sims list` shows "
        f"the names: {names}"
    )


def _recovery(files: Sequence[str], write: str | None) -> int:
    reports = []
    for file in files:
        try:
            reports.append(json.loads(Path(file).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{file}: not a readable JSON report: {exc}") from exc
    worst = worst_by_kind(reports)
    if write is not None:
        runs = [f"{r.get('name')} (seed {r.get('extra', {}).get('seed')})" for r in reports]
        document = {"runs": runs, "by_kind": worst}
        Path(write).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(recovery_table(worst))
    return EXIT_OK


def _list(folder: str) -> int:
    named = _named(Path(folder))
    if not named:
        print(f"{folder}: no scenario files (*.toml)", file=sys.stderr)
        return EXIT_USAGE
    width = max(len(name) for name, _, _ in named)
    for name, description, _ in named:
        print(f"{name:<{width}}  {description}")
    return EXIT_OK


def _describe(scenario: Scenario, seed: int | None) -> list[str]:
    traffic = scenario.traffic
    chosen = scenario.seed if seed is None else seed
    lines = [
        f"{scenario.source}: ok: {scenario.name}: {traffic.messages} messages on "
        f"{traffic.keys} keys at {traffic.rate:g}/s ({traffic.duration:g}s), "
        f"{'through a link, ' if scenario.link else ''}{scenario.tree.summary()}"
    ]
    for timed in build_schedule(scenario, chosen):
        lines.append(f"  {timed.at:>6.2f}s  {timed.fault.describe():<36} ({timed.origin})")
    if scenario.random is not None:
        lines.append(f"  (random faults drawn with seed {chosen})")
    return lines


def _check(files: Sequence[str], seed: int | None) -> int:
    for file in files:
        print("\n".join(_describe(load_scenario(scenario_path(file)), seed)))
    return EXIT_OK


async def _run(file: str, report: str | None, seed: int | None) -> int:
    scenario = load_scenario(scenario_path(file))
    result = await run_scenario(scenario, seed=seed)
    path = Path(report) if report is not None else default_report_path(scenario.name)
    written = result.write(path)
    plots = write_plots(result.as_dict(), written)
    get_logger().info("report_written", path=str(written), plots=[str(p) for p in plots])
    print(summarize(result))
    print(f"  report: {written}")
    if plots:
        print(f"  plots: {', '.join(str(p) for p in plots)}")
    if not result.ok or result.extra.get("orphans"):
        return EXIT_FAILED
    return EXIT_UNPLANNED if unplanned_count(result) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m sims``."""
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        if args.command == "list":
            return _list(args.dir)
        if args.command == "recovery":
            return _recovery(args.reports, args.write)
        if args.command == "check":
            return _check(args.files, args.seed)
        if args.command == "run":
            return anyio.run(_run, args.file, args.report, args.seed)
        if args.command == "predict":
            return anyio.run(sims.predict.main, args.seeds, args.link)
    except ConfigError as exc:
        print(f"sims: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DiasporaError as exc:
        get_logger().error("failed", error=str(exc))
        return EXIT_FAILED
    return EXIT_USAGE
