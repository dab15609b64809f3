"""Run the benchmarks: ``python -m bench [--quick] [--only GROUP,...] [--json PATH]``.

Prints a table as rows are measured and writes them, with ratios against the
raw nats-py / numpy baselines measured in the same run, to a JSON file.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import anyio

from bench.report import Report
from diaspora.log import configure_logging
from diaspora.observe import Progress

GROUPS = [
    "codec",
    "fabric",
    "objects",
    "actor",
    "supervision",
    "streams",
    "qos",
    "elastic",
    "bridges",
    "views",
    "migrate",
    "pools",
    "predict",
    "storage",
    "observe",
    "ptycho",
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    parser.add_argument("--only", help=f"comma-separated groups out of {','.join(GROUPS)}")
    parser.add_argument("--json", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args()
    groups = args.only.split(",") if args.only else GROUPS
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {unknown}; choose from {GROUPS}")
    configure_logging("WARNING")
    report = Report()

    async def run_all() -> None:
        # a bar on a terminal (stderr), nothing in a CI log
        with Progress("bench", total=len(groups)) as bar:
            for group in groups:
                bar.update(note=group)
                module = importlib.import_module(f"bench.{group}_bench")
                await module.run(report, args.quick)
                bar.advance()

    anyio.run(run_all)
    print()
    print(report.table())
    report.write_json(args.json)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
