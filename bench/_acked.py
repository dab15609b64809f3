"""The ``acked(rt)`` shim of the child scripts that run in another checkout.

``bench.instructions --tree`` and ``bench.large_messages --before`` run a
child interpreter in a checkout that may be from before the core redesign
(no ``ActorRuntime.outputs_acked``, and no module of this name): the shim is
pasted into each child's text rather than imported there.

>>> "def acked(rt):" in ACKED
True
"""

from __future__ import annotations

from typing import Final

__all__ = ["ACKED"]

#: ``acked(rt)``: the outputs ``rt`` had acknowledged, in this tree or one before the redesign.
ACKED: Final = """
def acked(rt):
    if hasattr(rt, "outputs_acked"):
        return rt.outputs_acked
    publisher = rt._publisher  # the tree before the redesign
    return publisher.acked if publisher is not None else 0
"""
