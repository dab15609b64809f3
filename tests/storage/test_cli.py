"""``diaspora storage``: repair after a site was replaced, stat, adapt and sweep, as a separate
process against real servers (one per site); off a terminal no progress bar is drawn."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest

from diaspora.fabric import Sites
from diaspora.storage import Policy
from tests.storage.rig import kill, revive, rig

pytestmark = pytest.mark.anyio

CHUNK = 32 * 1024
ROOT = Path(__file__).resolve().parents[2]


async def cli(sites: Sites, *args: str) -> tuple[int, str, str]:
    url = sites["hub"].url
    assert url is not None
    command = [sys.executable, "-m", "diaspora", "storage", args[0], "--url", url]
    command += ["--sites", "hub,a,b,c,d", "--bucket", "t", "--policy", "{ lose = 1 }", *args[1:]]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIASPORA_LOG_LEVEL": "WARNING"}
    done = await anyio.run_process(command, env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_the_storage_command_repairs_a_replaced_site_quietly_off_a_terminal(
    tmp_path: Path,
) -> None:
    policy = Policy(layout="rs:2+1", small=0, chunk_size=CHUNK, lose=1)
    async with rig(tmp_path, policy) as (sites, _, store):
        data = {"one": os.urandom(3 * CHUNK), "two": os.urandom(CHUNK + 5)}
        for name, value in data.items():
            await store.put(name, value)
        held = 0
        for name in data:
            chunks = (await store.stat(name)).chunks
            held += sum(f.site == "c" for c in chunks for f in c.fragments)
        assert held > 0
        await kill(sites, "c", wipe=True)  # site c replaced: it comes back empty
        await revive(sites, "c")

        code, out, err = await cli(sites, "repair", "--json")
        assert code == 0, err
        report = json.loads(out)
        assert (report["objects"], report["rebuilt"], report["lost"]) == (2, held, [])
        assert "\x1b[" not in err  # no bar drawn off a terminal
        assert "repair t" not in err
        store.sites.health["c"].down_until = 0.0
        assert (await store.repair()).rebuilt == 0  # the command restored every fragment

        code, out, err = await cli(sites, "stat")
        assert code == 0, err
        assert out.splitlines()[0].startswith("one: 98304 B, 3 chunks rs:2+1, x1.5")
        code, out, _ = await cli(sites, "stat", "--json", "two")
        chunks = json.loads(out)["two"]["chunks"]
        assert [c["layout"] for c in chunks] == ["rs:2+1", "rs:2+1"]

        code, out, err = await cli(sites, "adapt", "--policy", '{ layout = "rep:2", small = 0 }')
        assert code == 0, err
        assert "one[0] rs:2+1 -> rep:2" in out
        assert {str(c.layout) for c in (await store.stat("one")).chunks} == {"rep:2"}
        code, out, _ = await cli(sites, "sweep", "--min-age", "0")
        assert (code, out.strip()) == (0, "deleted: 0")
        for name, value in data.items():
            assert await store.get(name) == value

        code, _, err = await cli(sites, "stat", "--policy", "{ lose = 9 }")
        assert code == 2
        assert "--policy: storage policy" in err or "lose=9" in err
