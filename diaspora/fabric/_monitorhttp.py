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

__all__ = ["http_get", "monitor_json"]


async def http_get(host: str, port: int, path: str, timeout: float) -> tuple[int, bytes]:
    """A minimal HTTP/1.0 GET of ``path``: the status (0 if not HTTP) and the body.

    Raises ``OSError`` or ``TimeoutError`` when nothing answers within ``timeout``.
    """
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
    head, _, body = raw.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].split(b" ", 2)
    status = (
        int(first[1]) if head.startswith(b"HTTP/") and len(first) > 1 and first[1].isdigit() else 0
    )
    return status, body


async def monitor_json(base: str, endpoint: str, *, timeout: float = 2.0) -> dict[str, Any]:
    """The JSON a server's monitoring ``endpoint`` answers (``leafz``, ``varz``, or a path
    with its query).

    Raises :class:`~diaspora.errors.FabricUnavailable` naming the URL when it
    does not answer, answers another status than 200, or answers something
    other than a JSON object.
    """
    parts = urlsplit(base if "//" in base else f"http://{base}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 8222
    path = f"{parts.path.rstrip('/')}/{endpoint.lstrip('/')}"
    url = f"http://{host}:{port}{path}"
    try:
        status, body = await http_get(host, port, path, timeout)
    except (OSError, TimeoutError) as exc:
        raise FabricUnavailable(
            f"monitoring {url}: no answer ({exc!r}); is it the server's monitoring port "
            "(http_port)?"
        ) from None
    try:
        value = json.loads(body) if status == 200 else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise FabricUnavailable(f"monitoring {url}: HTTP {status}, not a JSON object")
    return value
