"""The 256 KiB pass-through ratio, before and after the core redesign, many rounds alternated.

    python -m bench.large_messages --before ../before --rounds 6

``--before`` is a checkout of the commit before the redesign (``git
worktree add ../before a092bd3``). Each round runs, in a fresh interpreter
of each tree in turn (so neither always runs first), raw nats-py's
consume+publish loop (``bench/raw.py``, fetches of 32) and then the
pass-through actor over the same number of pre-filled 256 KiB messages on
one embedded server, and prints the actor's rate over raw's. A round of
``python -m bench --only actor`` gives one such ratio per tree; this gives
as many as asked for, alternated, so the medians compare like with like on
a machine whose speed moves while it runs. Writes ``bench/large_messages.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench._acked import ACKED

HERE = Path(__file__).resolve().parent.parent

_CHILD = (
    """
import sys, time, anyio, nats
from bench import actor_bench as ab, raw
from diaspora import ActorRuntime
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.log import configure_logging
"""
    + ACKED
    + """
async def main():
    configure_logging("WARNING")
    n = int(sys.argv[1])
    payload = ab._payload(256 * 1024)
    async with EmbeddedServer() as server, Fabric(server.url, name="bench") as fabric:
        nc = await nats.connect(server.url)
        js = nc.jetstream(timeout=10)
        await ab._fresh(fabric, "bench.source", "bench.sink")
        await ab._fill(fabric, "bench.source", payload, n, "raw")
        raw_s = await raw.passthrough(nc, js, "bench.source", "bench.sink", n, batch=32)
        await ab._fresh(fabric, "bench.source", "bench.sink")
        await ab._fill(fabric, "bench.source", payload, n, "actor")
        runtime = ActorRuntime(ab.PassThrough, fabric, id="bench.pass.large")
        async with anyio.create_task_group() as tg:
            await tg.start(runtime.run)
            started = time.perf_counter()
            while acked(runtime) < n:
                await anyio.sleep(0.002)
            actor_s = time.perf_counter() - started
            runtime.request_stop()
        await nc.close()
        print(f"{n / raw_s} {n / actor_s}")

anyio.run(main)
"""
)


def _round(tree: Path, n: int) -> tuple[float, float]:
    """(raw msg/s, actor msg/s) of one run in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(n)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the run in {tree} failed:\n{done.stderr[-2000:]}")
    raw_rate, actor_rate = (float(x) for x in done.stdout.split()[-2:])
    return raw_rate, actor_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the redesign")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--messages", type=int, default=1000, help="256 KiB messages per run")
    parser.add_argument("--json", type=Path, default=HERE / "bench" / "large_messages.json")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    ratios: dict[str, list[float]] = {"before": [], "after": []}
    runs: list[dict[str, object]] = []
    for r in range(args.rounds):
        order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for label in order:
            raw_rate, actor_rate = _round(trees[label], args.messages)
            ratio = actor_rate / raw_rate
            ratios[label].append(ratio)
            runs.append({"round": r, "tree": label, "raw": raw_rate, "actor": actor_rate})
            print(f"round {r} {label:6} raw {raw_rate:6.0f} msg/s  actor {actor_rate:6.0f} msg/s"
                  f"  ratio {ratio:.3f}", flush=True)  # fmt: skip
    for label, values in ratios.items():
        shown = " ".join(f"{v:.2f}" for v in values)
        print(f"{label:6} median {statistics.median(values):.3f}  ({shown})")
    args.json.write_text(json.dumps({"runs": runs, "ratios": ratios}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
