"""Anomaly prediction: model cost per value, a monitor's throughput, LSTM training, NAB scores.

- ``µs/value <model>``: ``model.update`` over a synthetic lag series (N(10, 1)
  with congestion ramps), against the best hand-written alternative: an
  EWMA z-score written inline in the loop (no objects, no calls).
- ``events/s monitor <model>``: a monitor actor scoring a stream of numbers
  on a real nats-server, from start until it has handled all of them,
  against a hand-written actor doing the inline EWMA on the same stream.
- ``LSTM training s/10k``: one Lightning epoch over 10k values on CPU (the
  forecaster's own training), against a plain torch loop on the same
  network and batches.
- ``NAB <model> <profile>``: the normalised NAB score on the NAB series
  present (``DIASPORA_NAB_DIR`` or ``tests/data/nab``; skipped if absent).
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Any

import anyio

from bench.report import Report, Row
from diaspora import Actor, ActorRuntime, Message
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.predict import MonitorSpec, build_model, monitor_runtime
from diaspora.testing import wait_until

GROUP = "predict"
MODELS: dict[str, dict[str, Any]] = {
    "ewma_z": {"kind": "ewma_z"},
    "gaussian": {"kind": "gaussian"},
    "hst": {"kind": "hst"},
    "lstm": {"kind": "lstm", "first_train": 500, "retrain_every": 100_000},
}


def series(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        ramp = i % 2000
        out.append(rng.gauss(10.0, 1.0) + (0.3 * (ramp - 1900) if ramp > 1900 else 0.0))
    return out


def inline_ewma(values: list[float], alpha: float = 0.01) -> float:
    """The hand-written baseline: EWMA mean and variance and |z|, inline; returns the max z."""
    mean, var, worst = values[0], 0.0, 0.0
    for x in values[1:]:
        d = x - mean
        z = abs(d) / math.sqrt(var) if var > 0 else 0.0
        worst = z if z > worst else worst
        mean += alpha * d
        var = (1 - alpha) * (var + alpha * d * d)
    return worst


def _available(kind: str) -> bool:
    try:
        build_model(MODELS[kind])
    except Exception:
        return False
    return True


def per_value(report: Report, n: int) -> None:
    values = series(n)
    started = time.perf_counter()
    inline_ewma(values)
    baseline = (time.perf_counter() - started) / n * 1e6
    for kind, config in MODELS.items():
        if not _available(kind):
            print(f"  {kind}: not installed, skipped")
            continue
        m = n if kind not in ("hst", "lstm") else min(n, 5000)
        model = build_model(config)
        started = time.perf_counter()
        for t, x in enumerate(values[:m]):
            model.update(float(t), x)
        cost = (time.perf_counter() - started) / m * 1e6
        report.add(Row(GROUP, f"µs/value {kind}", cost, "µs", "inline EWMA loop", baseline,
                       extra={"values": m}))  # fmt: skip


class InlineEwma(Actor):
    """The hand-written actor baseline: decodes each number and updates an inline EWMA."""

    inputs = ("bench.lag",)

    def __init__(self) -> None:
        self.mean, self.var, self.n = 0.0, 0.0, 0

    async def handle(self, msg: Message) -> None:
        x = float(msg.data["lag"])
        self.n += 1
        d = x - self.mean
        self.mean += 0.01 * d
        self.var = 0.99 * (self.var + 0.01 * d * d)


async def _drain(runtime: ActorRuntime, n: int) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await wait_until(lambda: runtime.stats.handled >= n, timeout=600, interval=0.01)
        runtime.request_stop()
    return n / (time.perf_counter() - started)


async def throughput(report: Report, url: str, n: int) -> None:
    async with Fabric(url) as fabric:
        await fabric.ensure_stream("bench.lag")
        for x in series(n):
            await fabric.publish("bench.lag", {"lag": x})
        baseline = await _drain(ActorRuntime(InlineEwma, fabric, id="inline-ewma"), n)
        for kind in ("ewma_z", "gaussian", "hst"):
            if not _available(kind):
                continue
            spec = MonitorSpec(f"bench-{kind}", "bench.lag", value="lag", model=MODELS[kind])
            rate = await _drain(monitor_runtime(spec, fabric), n)
            report.add(Row(GROUP, f"events/s monitor {kind}", rate, "ev/s",
                           "hand-written EWMA actor", baseline, extra={"events": n}))  # fmt: skip


def lstm_training(report: Report, n: int) -> None:
    if not _available("lstm"):
        print("  lstm: torch/pytorch-lightning not installed, skipped")
        return
    import torch

    from diaspora.predict._lstm import LstmForecaster, _network

    values = series(n)
    model = LstmForecaster(window=32, hidden=32, first_train=n, train_size=n)
    job = {"at": n, "data": values, "seed": 0}
    started = time.perf_counter()
    model._train(job)
    lightning = (time.perf_counter() - started) * 10_000 / n
    torch.set_num_threads(1)
    z = torch.tensor(values, dtype=torch.float32)
    z = (z - z.mean()) / z.std()
    xs = torch.stack([z[i : i + 32] for i in range(n - 32)]).unsqueeze(-1)
    ys = z[32:].unsqueeze(-1)
    net = _network(torch, model._pl, 32, 1e-2)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    started = time.perf_counter()
    for i in torch.randperm(len(xs)).split(64):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(net(xs[i]), ys[i])
        loss.backward()
        optimiser.step()
    plain = (time.perf_counter() - started) * 10_000 / n
    report.add(Row(GROUP, "LSTM training s/10k values", lightning, "s", "plain torch loop", plain,
                   extra={"values": n, "epochs": 1, "window": 32, "hidden": 32}))  # fmt: skip


def nab_scores(report: Report) -> None:
    from diaspora.predict._corpus import read_corpus
    from diaspora.predict.score import run_model, score_corpus

    env = os.environ.get("DIASPORA_NAB_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / "tests" / "data" / "nab"
    if not (root / "combined_windows.json").is_file():
        print(f"  NAB: no data at {root}, skipped")
        return
    files = read_corpus(root)
    for kind in ("ewma_z", "gaussian", "hst"):
        if not _available(kind):
            continue
        anomaly = [run_model(MODELS[kind], f) for f in files]
        for row in score_corpus(kind, files, anomaly):
            report.add(Row(GROUP, f"NAB {kind} {row.profile}", row.score, "score",
                           extra={"files": len(files), "windows": row.windows,
                                  "threshold": row.threshold, "detected": row.detected,
                                  "fp": row.fp}))  # fmt: skip


async def run(report: Report, quick: bool) -> None:
    per_value(report, 20_000 if quick else 100_000)
    async with EmbeddedServer() as server:
        await throughput(report, server.url, 2_000 if quick else 10_000)
    lstm_training(report, 10_000)
    nab_scores(report)
