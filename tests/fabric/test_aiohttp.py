"""nats-py's aiohttp import (websocket connections only) is deferred until aiohttp is used."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
import diaspora.fabric
import nats.aio.transport as transport
assert "aiohttp.client" not in sys.modules, "aiohttp was loaded with the fabric"
assert transport.aiohttp, "nats-py must still see aiohttp as installed"
session = transport.aiohttp.ClientSession  # what a ws:// connection uses: loads it
assert "aiohttp.client" in sys.modules
import aiohttp
assert aiohttp.ClientSession is session
print("ok")
"""


def test_the_fabric_imports_nats_without_aiohttp_until_a_websocket_needs_it() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
