"""``diaspora demo ptychography``: the project's main job, the whole workflow on the twin.

``diaspora demo ptychography [--minutes N] [--faults FILE] [--out DIR] [--small]
[--change-at SCAN]``
runs ``supervisors/ptychography.toml`` on the infrastructure twin
``sims/twins/ptychography.toml`` (an edge and an HPC site, each a real
``nats-server`` with its JetStream domain, a shaped link proxy on the edge's
uplink), shows its progress live (frames produced, reconstructed, trained on,
inferred at the edge; the model version at the edge; lag; faults), applies
the fault schedule of ``--faults`` (``sims/twins/ptychography_faults.toml``
is the issue's), and writes ``report.json``, ``report.md`` and PNG plots into
``--out`` (default ``demo-ptychography/``).

Exit status: 0 when every check of the report holds, 1 when one does not,
2 for a usage or file error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import anyio

from diaspora.errors import ConfigError, DiasporaError
from diaspora.exitcode import ExitCode

__all__ = ["ROOT", "main"]

#: The checkout (or installed tree) holding supervisors/ and sims/twins/.
ROOT: Final = Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diaspora demo",
        description="The project's main job: the whole ptychography workflow on the twin.",
    )
    parser.add_argument("job", choices=["ptychography"], help="the workflow to run")
    parser.add_argument(
        "--minutes",
        type=float,
        default=3.0,
        help="minutes of acquisition (default 3), then the drain",
    )
    parser.add_argument("--faults", type=Path, help="a fault schedule ([[faults]] tables)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo-ptychography"),
        help="the report's directory (default demo-ptychography)",
    )
    parser.add_argument("--small", action="store_true", help="a 32 x 32 instrument and a small CNN")
    parser.add_argument(
        "--change-at",
        type=int,
        metavar="SCAN",
        help="the sample changes from this scan on (a drift for the edge's CNN)",
    )
    parser.add_argument("--plain", action="store_true", help="plain progress lines, even piped")
    parser.add_argument("--twin", type=Path, help="another twin file")
    parser.add_argument("--workflow", type=Path, help="another workflow file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``diaspora demo`` (``argv`` without the ``demo`` word)."""
    args = _parser().parse_args(argv)
    from sims.demo._ptycho import DemoOptions, run_demo

    options = DemoOptions(
        minutes=args.minutes,
        faults=args.faults,
        out=args.out,
        small=args.small,
        change_at=args.change_at,
        plain=args.plain,
        twin=args.twin or ROOT / "sims" / "twins" / "ptychography.toml",
        workflow=args.workflow or ROOT / "supervisors" / "ptychography.toml",
    )
    if not options.minutes > 0:
        print("diaspora demo: --minutes must be > 0", file=sys.stderr)
        return ExitCode.USAGE
    if options.change_at is not None and options.change_at < 0:
        print("diaspora demo: --change-at must be a scan number >= 0", file=sys.stderr)
        return ExitCode.USAGE
    try:
        report = anyio.run(run_demo, options)
    except ConfigError as exc:
        print(f"diaspora demo: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except DiasporaError as exc:  # the tree failed to start, or gave up
        print(f"diaspora demo: the workflow failed: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    ok = all(report["checks"].values())
    print(f"report: {options.out / 'report.md'} ({'all checks hold' if ok else 'CHECKS FAILED'})")
    return ExitCode.OK if ok else ExitCode.FAILED
