"""Workflow-file pieces the two-site tests share: the edge under the hpc, and a sum at the edge.

``TWO_SITES + EDGE_SUM`` is a tree whose root runs at the hpc with one child,
``edgesum``, at the edge (``edge.numbers`` in, ``edge.sums`` out); a test
appends its own children, streams and bridges.
"""

from __future__ import annotations

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
