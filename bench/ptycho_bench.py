"""Ptychography science on CPU: ePIE per tile, edge inference frames/s, training samples/s.

- ePIE on one tile (16 positions of 64x64, 50 iterations, known probe)
  against the plain loop of the research notes (``exp(i·angle)`` for the
  modulus constraint), both on the same simulated tile.
- Edge inference of the default PtychoNN-style model (nconv 16, depth 3) and
  a smaller one (nconv 8) at batch sizes 1, 16, 64, against what ePIE
  reconstructs per second (the alternative to a CNN at the edge).
- Online training samples/s through ``OnlineTrainer.train`` (a Lightning
  ``Trainer`` per round) against a hand-written torch loop on the same
  model, batch and data.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.report import Report, Row

GROUP = "ptycho"


def _plain_epie(
    counts: Any, positions: Any, probe: Any, shape: tuple[int, int], scale: float
) -> Any:
    """The notes' ePIE, as written there (the hand-written baseline)."""
    n, obj, amp = probe.shape[0], np.ones(shape, complex), np.sqrt(counts / scale)
    rng = np.random.default_rng(0)
    for _ in range(50):
        for i in rng.permutation(len(positions)):
            y, x = positions[i]
            o = obj[y : y + n, x : x + n]
            psi = probe * o
            big = np.fft.fft2(psi, norm="ortho")
            dpsi = np.fft.ifft2(amp[i] * np.exp(1j * np.angle(big)), norm="ortho") - psi
            obj[y : y + n, x : x + n] = o + probe.conj() / np.abs(probe).max() ** 2 * dpsi
    return obj


def _best(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


async def run(report: Report, quick: bool) -> None:
    import torch

    from actors.ptycho.epie import reconstruct, registered_error
    from actors.ptycho.model import ModelConfig, OnlineTrainer, PtychoNN, infer, prepare
    from actors.ptycho.simulate import ScanConfig, Simulator

    threads = torch.get_num_threads()
    repeats = 1 if quick else 3
    sim = Simulator(ScanConfig(seed=0))
    tile = sim.tile(0, 0)
    rel = tile.positions - tile.positions.min(axis=0)
    shape = (int(rel[:, 0].max()) + 64, int(rel[:, 1].max()) + 64)

    base = _best(lambda: _plain_epie(tile.patterns, rel, sim.probe, shape, sim.scale), repeats)
    report.add(Row(GROUP, "ePIE, notes' loop, 16 x 64x64, 50 it", base, "s/tile"))
    ours = _best(
        lambda: reconstruct(0, 0, tile.patterns, tile.positions, sim.probe, sim.scale), repeats
    )
    rec = reconstruct(0, 0, tile.patterns, tile.positions, sim.probe, sim.scale)
    error = registered_error(rec.obj, sim.obj(0)[rec.region], rec.mask())
    report.add(
        Row(
            GROUP, "ePIE per tile, 16 x 64x64, 50 it", ours, "s/tile",
            baseline="notes' loop", baseline_value=base,
            extra={"registered_error": error, "per_update_ms": 1e3 * ours / (16 * 50)},
        )
    )  # fmt: skip
    epie_fps = 16 / ours

    patterns = np.concatenate([t.patterns for t in sim.tiles(2)])  # 128 patterns
    for nconv in (16, 8):
        torch.manual_seed(0)
        model = PtychoNN(ModelConfig(nconv=nconv)).eval()
        params = sum(p.numel() for p in model.parameters())
        for batch in (1, 16, 64):
            count = 32 if batch == 1 else 128
            infer(model, patterns[:batch], batch)  # warm up
            seconds = _best(lambda m=model, b=batch, c=count: infer(m, patterns[:c], b), repeats)
            report.add(
                Row(
                    GROUP, f"edge inference nconv {nconv}, batch {batch}", count / seconds,
                    "frames/s", baseline="ePIE frames/s", baseline_value=epie_fps,
                    extra={"parameters": params, "threads": threads},
                )
            )  # fmt: skip

    torch.set_num_threads(1)  # one thread: what a worker slot on a shared 2-core host gets
    torch.manual_seed(0)
    model = PtychoNN(ModelConfig()).eval()
    infer(model, patterns[:64], 64)
    seconds = _best(lambda: infer(model, patterns, 64), repeats)
    report.add(
        Row(
            GROUP, "edge inference nconv 16, batch 64, 1 thread", 128 / seconds, "frames/s",
            baseline="ePIE frames/s", baseline_value=epie_fps, extra={"threads": 1},
        )
    )  # fmt: skip
    torch.set_num_threads(threads)

    steps = 4 if quick else 10
    trainer = OnlineTrainer(probe=sim.probe, batch_size=32, seed=0)
    amplitude = np.ones((len(patterns), 64, 64), np.float32)
    trainer.add(patterns, amplitude, np.zeros_like(amplitude))
    trainer.train(1)  # warm up
    lightning = _best(lambda: trainer.train(steps), repeats)

    torch.manual_seed(0)
    model = PtychoNN(ModelConfig(), trainer.weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, a = prepare(patterns), torch.as_tensor(amplitude)
    p = torch.zeros_like(a)

    def loop() -> None:
        model.train()
        for step in range(steps):
            idx = torch.arange(step * 32, step * 32 + 32) % len(x)
            optimizer.zero_grad()
            loss = model.loss((x[idx], a[idx], p[idx]))
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()

    loop()  # warm up
    plain = _best(loop, repeats)
    report.add(Row(GROUP, "training, plain torch loop, batch 32", steps * 32 / plain, "samples/s"))
    report.add(
        Row(
            GROUP, "training, OnlineTrainer (Lightning), batch 32", steps * 32 / lightning,
            "samples/s", baseline="plain torch loop", baseline_value=steps * 32 / plain,
            extra={"steps_per_round": steps, "threads": threads},
        )
    )  # fmt: skip
