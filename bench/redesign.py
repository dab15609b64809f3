"""Before/after the core redesign, in one run: ``python -m bench.redesign --before DIR``.

``DIR`` is a checkout of the commit before the redesign (``git worktree add
DIR a092bd3``). Both trees run their own ``python -m bench --only
actor,supervision`` on this machine, alternated ``--rounds`` times (figures
are the medians), each against raw nats-py in the same process, so the
ratios compare like with like. Import costs are
measured here for both trees: the time a fresh interpreter spends in
``import diaspora`` (median of ``--imports`` runs) and the number of ``diaspora``
modules it loads, and the same for the module a process node's child
process runs. Writes ``bench/redesign.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
#: (group, benchmark) rows compared, and whether a larger ratio/value is better.
COMPARED = [
    ("actor", "pass-through actor 128B", "ratio", True),
    ("actor", "pass-through actor 256KiB", "ratio", True),
    ("actor", "restart to caught_up, 10k backlog", "value", False),
    ("actor", "catch-up rate 128B", "ratio", True),
    ("supervision", "restart latency, actor child p50", "value", False),
    ("supervision", "restart latency, process node (kill -9) p50", "value", False),
    ("supervision", "restart latency, process node (kill -9) p99", "value", False),
]
#: The module a process node's child runs, before and after the layer moves.
HOST_MODULES = ["diaspora.workflow._host", "diaspora.supervision.host"]


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}


def _bench(tree: Path, quick: bool) -> dict[tuple[str, str], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "results.json"
        command = [sys.executable, "-m", "bench", "--only", "actor,supervision", "--json", str(out)]
        if quick:
            command.append("--quick")
        print(f"\n== {tree}: {' '.join(command[1:])}", flush=True)
        subprocess.run(command, cwd=tree, env=_env(tree), check=True)
        rows = json.loads(out.read_text())["rows"]
    return {(r["group"], r["name"]): r for r in rows}


def _import_cost(tree: Path, module: str, runs: int) -> tuple[float, int]:
    """Median seconds a fresh interpreter takes to import ``module``; diaspora modules loaded."""
    probe = (
        "import sys, time; t = time.perf_counter(); import {m}; d = time.perf_counter() - t; "
        "print(d, sum(1 for n in sys.modules if n == 'diaspora' or n.startswith('diaspora.')))"
    )
    times, loaded = [], 0
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", probe.format(m=module)],
            cwd=tree,
            env=_env(tree),
            check=True,
            capture_output=True,
            text=True,
        )
        seconds, count = result.stdout.split()
        times.append(float(seconds))
        loaded = int(count)
    return statistics.median(times), loaded


def _host_module(tree: Path) -> str:
    for module in HOST_MODULES:
        if (tree / (module.replace(".", "/") + ".py")).exists():
            return module
    raise SystemExit(f"{tree}: no process-node host module among {HOST_MODULES}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.redesign", description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="checkout before the redesign")
    parser.add_argument("--quick", action="store_true", help="smaller bench runs")
    parser.add_argument("--imports", type=int, default=15, help="fresh interpreters per import")
    parser.add_argument(
        "--rounds", type=int, default=3, help="before/after bench runs, alternated (medians)"
    )
    parser.add_argument("--json", type=Path, default=HERE / "bench" / "redesign.json")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    started = time.time()
    runs: dict[str, list[dict[tuple[str, str], dict[str, Any]]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for label, tree in trees.items():
            runs[label].append(_bench(tree, args.quick))
    results: dict[str, dict[str, Any]] = {}
    for label, tree in trees.items():
        imports = {
            "import diaspora": _import_cost(tree, "diaspora", args.imports),
            "import the process-node host": _import_cost(tree, _host_module(tree), args.imports),
        }
        rows = {
            key: {
                **runs[label][0][key],
                "value": statistics.median(r[key]["value"] for r in runs[label]),
                "ratio": statistics.median(r[key]["ratio"] or 0.0 for r in runs[label]),
                "runs": [{"value": r[key]["value"], "ratio": r[key]["ratio"]} for r in runs[label]],
            }
            for key in runs[label][0]
        }
        results[label] = {"tree": str(tree), "rows": rows, "imports": imports}
    table: list[dict[str, Any]] = []
    for group, name, field, higher_better in COMPARED:
        before = results["before"]["rows"][(group, name)]
        after = results["after"]["rows"][(group, name)]
        table.append(
            {
                "figure": f"{group}: {name}"
                + (" (ratio to raw nats-py)" if field == "ratio" else ""),
                "unit": "x" if field == "ratio" else before["unit"],
                "before": before[field],
                "after": after[field],
                "higher_is_better": higher_better,
            }
        )
    for what in ("import diaspora", "import the process-node host"):
        (b_s, b_n), (a_s, a_n) = (
            results["before"]["imports"][what],
            results["after"]["imports"][what],
        )
        table.append({"figure": f"{what} (wall)", "unit": "ms", "before": b_s * 1e3,
                      "after": a_s * 1e3, "higher_is_better": False})  # fmt: skip
        table.append({"figure": f"{what} (diaspora modules loaded)", "unit": "modules",
                      "before": b_n, "after": a_n, "higher_is_better": False})  # fmt: skip
    print(f"\n{'figure':<66} {'before':>10} {'after':>10}  unit")
    for row in table:
        print(f"{row['figure']:<66} {row['before']:>10.3f} {row['after']:>10.3f}  {row['unit']}")
    doc = {
        "started": started,
        "duration_s": time.time() - started,
        "quick": args.quick,
        "rounds": args.rounds,
        "table": table,
        "raw": {
            label: {
                "tree": r["tree"],
                "imports": r["imports"],
                "rows": [r["rows"][(g, n)] for g, n, _, _ in COMPARED],
            }
            for label, r in results.items()
        },
    }
    args.json.write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
