"""The exit statuses of Diaspora's processes: the ``diaspora`` command and process nodes.

One table, each value with one meaning, so a status read in a log or a shell
says what happened whichever process exited with it:

>>> [(code.name, int(code)) for code in ExitCode]  # doctest: +NORMALIZE_WHITESPACE
[('OK', 0), ('FAILED', 1), ('USAGE', 2), ('START_FAILED', 3), ('BAD_TREE', 4),
 ('ORPHANED', 5)]
"""

from __future__ import annotations

from enum import IntEnum, unique

__all__ = ["ExitCode"]


@unique
class ExitCode(IntEnum):
    """Why a Diaspora process exited."""

    #: Stopped by a signal after an orderly shutdown, or what it ran returned.
    OK = 0
    #: What it ran failed: the root supervisor gave up (restart intensity
    #: exceeded), an actor crashed, a node's subtree raised, the fabric was
    #: unreachable... The reason is logged (and a node sends it to its parent).
    FAILED = 1
    #: A usage or config error: nothing was started (argparse's status, too).
    USAGE = 2
    #: ``diaspora run``: a child failed to start; those started before it were stopped.
    START_FAILED = 3
    #: A process node could not load the subtree its parent sent (an import failed there).
    BAD_TREE = 4
    #: A process node's parent died before the node could be tied to it.
    ORPHANED = 5
