"""Running the ``diaspora`` observe commands as the user does: a subprocess of this repo."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def diaspora_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "diaspora", *args]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop("DIASPORA_URL", None)
    return env
