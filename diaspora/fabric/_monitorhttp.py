"""Reading a nats-server's monitoring port (``varz``, ``leafz``, ``jsz``...) over plain HTTP.

Read-only views show what only the servers know: leaf links with their RTT
and byte counts, connections with their pending bytes. ``base`` is the
monitoring URL (``http://127.0.0.1:8222``; an
:class:`~diaspora.fabric.EmbeddedServer` listens on ``monitor_port``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

import anyio

from diaspora.errors import FabricUnavailable

__all__ = ["monitor_json"]


async def monitor_json(base: str, endpoint: str, *, timeout: float = 2.0) -> dict[str, Any]:
    """The JSON a server's monitoring ``endpoint`` answers (``leafz``, ``varz``...).

    Raises :class:`~diaspora.errors.FabricUnavailable` naming the URL when it
    does not answer or answers something other than a JSON object.
    """
    parts = urlsplit(base if "//" in base else f"http://{base}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 8222
    path = f"{parts.path.rstrip('/')}/{endpoint.lstrip('/')}"
    url = f"http://{host}:{port}{path}"
    try:
        with anyio.fail_after(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                raw = await reader.read()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as exc:
        raise FabricUnavailable(
            f"monitoring {url}: no answer ({exc!r}); check the server's http port"
        ) from None
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n")[0] + b" ":
        value = None
    if not isinstance(value, dict):
        raise FabricUnavailable(f"monitoring {url}: not a JSON object ({head[:40]!r})")
    return value
