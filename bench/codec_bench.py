"""Codec throughput for a 256x256 float32 frame against tobytes()/np.frombuffer."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bench.report import Report, Row
from diaspora import codec


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``, measured for about ``seconds``."""
    n, started = 0, time.perf_counter()
    while True:
        for _ in range(100):
            fn()
        n += 100
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return n / elapsed


async def run(report: Report, quick: bool) -> None:
    budget = 0.5 if quick else 2.0
    frame = np.random.default_rng(0).random((256, 256), dtype=np.float32)
    mb = frame.nbytes / 1e6
    message = {"frame": frame, "seq": 1, "scan": "s1"}
    payload = codec.encode(message)
    raw = frame.tobytes()

    base_enc = _rate(frame.tobytes, budget)
    enc = _rate(lambda: codec.encode(message), budget)
    report.add(Row("codec", "ndarray.tobytes() 256x256 f32", base_enc * mb, "MB/s"))
    report.add(
        Row(
            "codec",
            "encode 256x256 f32 frame",
            enc * mb,
            "MB/s",
            baseline="ndarray.tobytes()",
            baseline_value=base_enc * mb,
        )
    )

    base_dec = _rate(lambda: np.frombuffer(raw, np.float32).reshape(256, 256), budget)
    dec = _rate(lambda: codec.decode(payload), budget)
    report.add(Row("codec", "np.frombuffer 256x256 f32", base_dec * mb, "MB/s"))
    report.add(
        Row(
            "codec",
            "decode 256x256 f32 frame",
            dec * mb,
            "MB/s",
            baseline="np.frombuffer",
            baseline_value=base_dec * mb,
        )
    )
    report.add(Row("codec", "decode 256x256 f32 frame (per call)", 1e6 / dec, "us"))
