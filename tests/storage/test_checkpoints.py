"""Large actor checkpoints in resilient storage, by the actor's ``checkpoint_storage`` setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from diaspora import ActorRuntime
from diaspora.actor import CheckpointSlot
from diaspora.fabric import Sites
from diaspora.storage import Policy, StorageSpec
from tests.actor.sample_actors import Hoarder
from tests.actor.test_exactly_once import run_until
from tests.storage.rig import kill, specs

pytestmark = pytest.mark.anyio


async def test_a_large_checkpoint_survives_the_loss_of_a_site(tmp_path: Path) -> None:
    async with Sites(specs(), state_dir=tmp_path / "sites") as sites:
        spec = StorageSpec(
            {s.name: s.domain for s in sites},
            bucket="ckpt",
            policy=Policy(layout="rs:3+2", lose=2, chunk_size=1 << 20),
            meta="hub",
        )

        class Keeper(Hoarder):
            checkpoint_storage = spec

        async with sites.fabric("hub") as fabric:
            await fabric.ensure_stream("frames")
            rng = np.random.default_rng(1)
            count = fabric.inline_limit // (256 * 256 * 4) + 4  # more than one KV value holds
            frames = [rng.random((256, 256), dtype=np.float32) for _ in range(count)]
            for frame in frames:
                await fabric.publish("frames", {"frame": frame})
            runtime = ActorRuntime(Keeper, fabric, id="keeper")

            async def caught_up() -> bool:
                return runtime.positions.get("frames", 0) >= count

            await run_until(runtime, caught_up)
            record = (await CheckpointSlot.claim(fabric, "keeper")).current
            assert record is not None
            assert record.state_ref is not None
            assert record.state_ref.startswith("storage:ckpt/")
            async with spec.open(fabric) as store:
                manifest = await store.stat(record.state_ref.partition("/")[2])
                layouts = [str(c.layout) for c in manifest.chunks]
                assert set(layouts[:-1]) == {"rs:3+2"}  # a short last chunk may be replicated
                assert layouts[-1] in {"rs:3+2", "rep:3"}
            await kill(sites, "a")
            await kill(sites, "b")  # two sites gone: a restart still restores the state
            restarted = ActorRuntime(Keeper, fabric, id="keeper")
            seen: dict[str, Any] = {}

            async def restored() -> bool:
                actor = restarted._actor
                if actor is not None and len(actor.frames) == count:
                    seen["frames"] = actor.frames
                return "frames" in seen

            await run_until(restarted, restored)
            assert np.array_equal(seen["frames"], np.stack(frames))  # > 4 MiB round trip
