"""Workflow-file pieces the two-site tests share: the edge under the hpc, and a sum at the edge.

``TWO_SITES + EDGE_SUM`` is a tree whose root runs at the hpc with one child,
``edgesum``, at the edge (``edge.numbers`` in, ``edge.sums`` out); a test
appends its own children, streams and bridges. :func:`site_lines` reads the sites a
``diaspora run --json`` of such a tree started.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.test_cli_run import Running

#: ``[sites]``: the edge (domain ``edge``) under the hpc (domain ``hpc``).
TWO_SITES = """
[sites.edge]
domain = "edge"
parent = "hpc"
[sites.hpc]
domain = "hpc"
"""

#: The root at the hpc and its first child, a running sum at the edge.
EDGE_SUM = """
[supervisor]
site = "hpc"

[[supervisor.children]]
id = "edgesum"
site = "edge"
actor = "actors.examples:RunningSum"
args = { to = "edge.sums" }
inputs = ["edge.numbers"]
"""


async def site_lines(run: Running) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Once ``diaspora run --json`` says it runs: the JSON lines it printed, and each site's url."""
    await run.wait_for(r'"status": "running"', stdout=True)
    lines = [json.loads(line) for line in run.out().splitlines()]
    return lines, {line["site"]: line["url"] for line in lines if line.get("site")}
