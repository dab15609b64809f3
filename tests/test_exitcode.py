"""One table of exit statuses for every Diaspora process, each value with one meaning;
a process node's own failures use values of their own, not the command's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from diaspora.exitcode import ExitCode
from diaspora.workflow._node import PARENT_PID_ENV

ROOT = Path(__file__).resolve().parent.parent


def test_every_exit_status_has_one_meaning() -> None:
    assert len({int(code) for code in ExitCode}) == len(ExitCode.__members__)
    assert ExitCode.USAGE == 2  # argparse exits 2 on a bad command line: the same meaning


def host(stdin: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    """``python -m diaspora.workflow._host`` as a node's parent would start it."""
    return subprocess.run(
        [sys.executable, "-m", "diaspora.workflow._host"],
        input=stdin,
        env={**os.environ, "PYTHONPATH": str(ROOT), PARENT_PID_ENV: str(os.getpid()), **env},
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_a_node_that_cannot_load_its_subtree_exits_bad_tree_not_usage() -> None:
    done = host(b'{"sys_path": []}\nnot a pickle')
    assert done.returncode == ExitCode.BAD_TREE == 4
    assert b'"t": "error"' in done.stdout
    assert b"cannot load the subtree" in done.stdout


def test_a_node_whose_parent_is_gone_exits_orphaned_not_start_failed() -> None:
    done = host(b"", **{PARENT_PID_ENV: str(2**22 + 1)})  # never this process's parent
    assert done.returncode == ExitCode.ORPHANED == 5
