"""Running the ``diaspora`` observe commands as the user does: a subprocess of this repo."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from diaspora.log import configure_logging

ROOT = Path(__file__).resolve().parents[2]


def diaspora_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "diaspora", *args]


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    env.pop("DIASPORA_URL", None)
    for sized in ("COLUMNS", "LINES"):  # rich would take them over the pty's own size
        env.pop(sized, None)
    return env


@contextlib.contextmanager
def quiet_logs_restored() -> Iterator[None]:
    """Run an observe command in this process: it quiets the logs; set them back after."""
    try:
        yield
    finally:
        configure_logging(force=True)
