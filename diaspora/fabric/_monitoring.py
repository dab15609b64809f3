"""Reading a nats-server's monitoring endpoints (``/connz``, ``/leafz``, ``/jsz``...) over HTTP.

The monitoring port speaks plain HTTP/1.0 JSON; this module GETs one
endpoint and flattens the signals a monitor forecasts into
``(metric, name, value)`` samples:

- ``connz.pending_bytes`` and ``connz.rtt_s`` per client connection (its
  name, else ``cid:<n>``): bytes queued for a slow reader, the leading sign
  of congestion, and the round trip;
- ``leafz.rtt_s`` and ``leafz.pending_bytes`` per leaf link (its remote name);
- ``jsz.num_pending``, ``jsz.num_ack_pending``, ``jsz.num_redelivered`` per
  consumer (``<stream>/<consumer>``).

>>> parse_duration("1.5ms"), parse_duration("250µs"), parse_duration("1m2s")
(0.0015, 0.00025, 62.0)
"""

from __future__ import annotations

import re
from typing import Any, Final

from diaspora.fabric._monitorhttp import monitor_json

__all__ = ["ENDPOINTS", "monitoring_json", "parse_duration", "samples"]

#: each endpoint, with the query that makes it list what :func:`samples` reads
ENDPOINTS: Final = {
    "connz": "/connz",
    "leafz": "/leafz",
    "jsz": "/jsz?accounts=true&streams=true&consumers=true",
}
_UNITS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
_PART = re.compile(r"([0-9.]+)(h|ms|m|s|µs|us|ns)")


def parse_duration(text: str) -> float | None:
    """A Go duration (``"1.5ms"``, ``"2m3s"``) in seconds; ``None`` if it is not one."""
    parts = _PART.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


async def monitoring_json(url: str, endpoint: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """GET ``endpoint`` (a key of :data:`ENDPOINTS` or a path) of the monitoring port at ``url``.

    Raises :class:`~diaspora.errors.FabricUnavailable` naming the URL when it
    does not answer with JSON.
    """
    path = ENDPOINTS.get(endpoint, endpoint if endpoint.startswith("/") else f"/{endpoint}")
    return await monitor_json(url, path, timeout=timeout)


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def samples(endpoint: str, data: dict[str, Any]) -> list[tuple[str, str, float]]:
    """The ``(metric, name, value)`` samples of one endpoint's JSON (see the module docstring)."""
    out: list[tuple[str, str, float]] = []

    def add(metric: str, name: str, value: float | None) -> None:
        if value is not None:
            out.append((metric, name, value))

    if endpoint == "connz":
        for conn in data.get("connections") or []:
            name = str(conn.get("name") or f"cid:{conn.get('cid')}")
            add("connz.pending_bytes", name, _num(conn.get("pending_bytes")))
            add("connz.rtt_s", name, parse_duration(str(conn.get("rtt", ""))))
    elif endpoint == "leafz":
        for leaf in data.get("leafs") or []:
            name = str(leaf.get("name") or leaf.get("ip") or "leaf")
            add("leafz.rtt_s", name, parse_duration(str(leaf.get("rtt", ""))))
            add(
                "leafz.pending_bytes",
                name,
                _num(leaf.get("pending_bytes", leaf.get("pending_size"))),
            )
    elif endpoint == "jsz":
        for account in data.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                for consumer in stream.get("consumer_detail") or []:
                    name = f"{stream.get('name')}/{consumer.get('name')}"
                    for key in ("num_pending", "num_ack_pending", "num_redelivered"):
                        add(f"jsz.{key}", name, _num(consumer.get(key)))
    return out
