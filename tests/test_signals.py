"""The processes tests start can be stopped with Ctrl-C, however the suite was started."""

from __future__ import annotations

import subprocess
import sys


def test_children_of_the_suite_do_not_ignore_sigint() -> None:
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # tests/conftest.py: SIGINT is not ignored
