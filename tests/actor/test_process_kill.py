"""An actor in a child OS process, SIGKILLed three times at random points (issue test 2)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from diaspora.fabric import Fabric
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from tests.actor.test_exactly_once import N, expected_sums, publish_numbers, stream_count

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def start_actor(url: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DIASPORA_LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "diaspora",
            "actor",
            "tests.actor.sample_actors:RunningSum",
            "--id",
            "sum",
            "--url",
            url,
            "--args",
            '{"delay": 0.0005}',
        ],
        cwd=ROOT,
        env=env,
    )


async def test_sigkilled_actor_process_resumes_and_emits_each_output_once(
    fabric: Fabric,
) -> None:
    await fabric.ensure_stream("numbers")
    await publish_numbers(fabric, N)
    kill_points = sorted(random.Random(3).sample(range(500, N - 500), 3))
    kills = 0
    proc = start_actor(fabric.urls[0])
    try:
        for point in kill_points:

            async def reached(p: int = point) -> bool:
                return await stream_count(fabric, "sums") >= p

            await wait_until(reached, timeout=60, interval=0.005)
            proc.send_signal(signal.SIGKILL)
            assert await anyio.to_thread.run_sync(proc.wait) == -signal.SIGKILL
            kills += 1
            proc = start_actor(fabric.urls[0])

        async def all_out() -> bool:
            return await stream_count(fabric, "sums") >= N

        await wait_until(all_out, timeout=90, interval=0.05)
        proc.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(proc.wait) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert kills == 3
    stored = await read_stream(fabric, "sums")
    assert [m.data for m in stored] == expected_sums(N)
