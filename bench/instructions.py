"""Instructions per message of the pass-through actor, counted with callgrind.

    python -m bench.instructions                      # this tree
    python -m bench.instructions --tree ../before     # another checkout (run alternately)

For each of 2,000 and 7,000 pre-filled 128 B messages, an embedded server is
filled without tracing, then a child interpreter runs the pass-through actor
under ``valgrind --tool=callgrind`` until every output is acknowledged (it
polls every 250 ms: a tighter poll makes the count move with the machine's
load). The figure is the difference of the two runs' instruction counts over
5,000, so start-up and shutdown cancel out. Needs ``valgrind``; the child
imports ``diaspora`` and ``bench`` from ``--tree`` (the working directory of
``python -m`` comes first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import anyio

from bench._acked import ACKED

_CHILD = (
    """
import sys, anyio
from bench import actor_bench as ab
from diaspora import ActorRuntime
from diaspora.fabric import Fabric
from diaspora.log import configure_logging
"""
    + ACKED
    + """
async def main():
    configure_logging("WARNING")
    n = int(sys.argv[2])
    async with Fabric(sys.argv[1]) as fabric:
        rt = ActorRuntime(ab.PassThrough, fabric, id="bench.pass")
        async with anyio.create_task_group() as tg:
            await tg.start(rt.run)
            while acked(rt) < n:
                await anyio.sleep(0.25)
            rt.request_stop()

anyio.run(main)
"""
)

_FILL = """
import sys, anyio
from bench import actor_bench as ab
from diaspora.fabric import Fabric
from diaspora.log import configure_logging

async def main():
    configure_logging("WARNING")
    async with Fabric(sys.argv[1]) as fabric:
        await ab._fresh(fabric, "bench.source", "bench.sink")
        await ab._fill(fabric, "bench.source", ab._payload(128), int(sys.argv[2]), "in")

anyio.run(main)
"""


async def _count(tree: Path, n: int, work: Path) -> int:
    from diaspora.fabric import EmbeddedServer

    env = {**os.environ, "PYTHONPATH": str(tree)}
    async with EmbeddedServer() as server:
        await anyio.run_process(
            [sys.executable, "-c", _FILL, server.url, str(n)], cwd=tree, env=env, check=True
        )
        out = work / f"callgrind.{n}.out"
        done = await anyio.run_process(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             "-c", _CHILD, server.url, str(n)],
            cwd=tree, env=env, check=True,
        )  # fmt: skip
    found = re.search(rb"Collected\s*:\s*(\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no instruction count: {done.stderr[-400:]!r}")
    return int(found.group(1))


async def main(tree: Path) -> int:
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (apt install valgrind)")
    with tempfile.TemporaryDirectory() as work:
        low = await _count(tree, 2000, Path(work))
        high = await _count(tree, 7000, Path(work))
    return (high - low) // 5000


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path.cwd(), help="the checkout to measure")
    args = parser.parse_args()
    per = anyio.run(main, args.tree.resolve())
    print(f"{args.tree}: {per} instructions per message")
