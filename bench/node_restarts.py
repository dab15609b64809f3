"""Process-node restart latency after ``kill -9``, in rounds: ``python -m bench.node_restarts``.

``--rounds R`` times (each round its own embedded server): ``--kills N``
restarts through the warm standby, ``N`` with ``standby=False`` and ``N``
bare spawn+import+connect baselines (the rows of ``bench.supervision_bench``,
interleaved in one run). Prints every round and the median over rounds of
each figure; ``--json PATH`` writes all of it; ``--merge bench/results.json``
puts the median figures into that file's rows (replacing rows of the same
name), with every round's value in ``extra``.

On a machine shared with other jobs one round's figures move a lot: compare
the medians, and the ratios of a round (both paths and the baseline are
measured in the same round).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio

from bench.report import Report
from bench.supervision_bench import GROUP, node_restart_rows
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.log import configure_logging


async def _round(kills: int) -> Report:
    report = Report()
    async with EmbeddedServer() as server, Fabric(server.url, name="bench") as fabric:
        await node_restart_rows(report, server, fabric, kills)
    return report


def _medians(rounds: list[Report]) -> list[dict[str, Any]]:
    rows = []
    for i, first in enumerate(rounds[0].rows):
        same = [r.rows[i] for r in rounds]
        values = [r.value for r in same]
        bases = [r.baseline_value for r in same if r.baseline_value is not None]
        value = statistics.median(values)
        base = statistics.median(bases) if bases else None
        ratios = [r.ratio for r in same if r.ratio is not None]
        rows.append(
            {
                "group": GROUP,
                "name": first.name,
                "value": value,
                "unit": first.unit,
                "baseline": first.baseline,
                "baseline_value": base,
                "extra": {
                    **first.extra,
                    "rounds": len(rounds),
                    "median_of": "rounds",
                    "values": [round(v, 1) for v in values],
                    "baseline_values": [round(b, 1) for b in bases],
                    "ratios": [round(x, 3) for x in ratios],
                },
                "ratio": statistics.median(ratios) if ratios else None,
            }
        )
    return rows


def _merge(path: Path, rows: list[dict[str, Any]]) -> None:
    doc = json.loads(path.read_text())
    names = {row["name"] for row in rows}
    kept = [r for r in doc["rows"] if not (r["group"] == GROUP and r["name"] in names)]
    # where the old rows were, else at the end of the group
    at = next(
        (i for i, r in enumerate(doc["rows"]) if r["group"] == GROUP and r["name"] in names),
        len(kept),
    )
    at = min(at, len(kept))
    doc["rows"] = kept[:at] + rows + kept[at:]
    path.write_text(json.dumps(doc, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.node_restarts", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=15)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--merge", type=Path, help="a bench results file to put the medians in")
    args = parser.parse_args()
    configure_logging("WARNING")
    os.environ.setdefault("DIASPORA_LOG_LEVEL", "WARNING")  # the nodes' own logs
    rounds = []
    for i in range(args.rounds):
        print(f"-- round {i + 1} of {args.rounds}", flush=True)
        rounds.append(anyio.run(_round, args.kills))
    medians = _medians(rounds)
    print(f"\nmedians of {args.rounds} rounds ({args.kills} kills each):")
    for row in medians:
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else ""
        print(
            f"{row['name']:<52} {row['value']:>8.1f} {row['unit']:<3} "
            f"{row['baseline']:<32} {row['baseline_value']:>8.1f}  ratio {ratio}"
        )
    if args.json is not None:
        every = [[asdict(r) | {"ratio": r.ratio} for r in rep.rows] for rep in rounds]
        args.json.write_text(json.dumps({"rounds": every, "medians": medians}, indent=2))
    if args.merge is not None:
        _merge(args.merge, medians)
        print(f"merged into {args.merge}")


if __name__ == "__main__":
    main()
