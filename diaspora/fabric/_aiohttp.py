"""nats-py imports aiohttp at once, for websocket connections only: load it when first used.

aiohttp is about 40 % of what a process node's interpreter imports before it
can connect (``python -X importtime -m diaspora.workflow._host``), and a
``nats://`` connection never touches it. Importing this module (the fabric
layer does, first) calls :func:`import_nats`: nats-py's transport module is imported while
aiohttp looks absent, then it is given a lazy aiohttp module
(:class:`importlib.util.LazyLoader`, also put in ``sys.modules``) that loads
in full on the first attribute anyone reads: a ``ws://`` connection, or a
user's own ``import aiohttp``. Nothing changes if aiohttp is not installed,
or if nats-py was imported before Diaspora.

>>> import_nats()
>>> import nats.aio.transport
>>> bool(nats.aio.transport.aiohttp)  # there, and not loaded by asking
True
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

__all__ = ["import_nats"]

_TRANSPORT = "nats.aio.transport"


def import_nats() -> None:
    """Import nats-py with its aiohttp import deferred until aiohttp is used."""
    if _TRANSPORT in sys.modules or "aiohttp" in sys.modules:
        return
    spec = importlib.util.find_spec("aiohttp")
    if spec is None or spec.loader is None:
        importlib.import_module(_TRANSPORT)
        return
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # "import aiohttp" fails here
    try:
        transport = importlib.import_module(_TRANSPORT)
    finally:
        del sys.modules["aiohttp"]
    spec.loader = importlib.util.LazyLoader(spec.loader)
    lazy = importlib.util.module_from_spec(spec)
    sys.modules["aiohttp"] = lazy
    spec.loader.exec_module(lazy)
    if getattr(transport, "aiohttp", lazy) is None:  # what nats-py binds when it is absent
        transport.aiohttp = lazy  # type: ignore[attr-defined]


import_nats()
