"""``diaspora events``: the events stream, decoded, filtered, one line per event.

Each line is the event's time, its stream sequence, category, whom it is
about, kind and fields (``--json``: the wire record with its ``seq``, one
JSON object a line, which ``diaspora top FILE`` reads back). Times are
ISO 8601, Unix seconds, or an age (``90s``, ``10m``, ``2h``, ``1d``).

>>> parse_time("1700000000")
1700000000.0
>>> parse_time("10m", now=1000.0)
400.0
>>> from diaspora.events import Crashed
>>> seen = Observed(seq=7, time=0.0, event=Crashed(name="root.sum", reason="boom"))
>>> format_line(seen)
'1970-01-01T00:00:00.000Z      7 actor       root.sum                 crashed        reason=boom'
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

from diaspora.errors import ConfigError
from diaspora.events import decode_record
from diaspora.fabric import Fabric
from diaspora.observe._reader import EventFilter, Observed, actor_of, category_of, kind_of
from diaspora.observe._reader import read_events as _read

__all__ = ["format_line", "parse_time", "print_events", "read_recorded", "to_json_line"]

_AGE: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time(text: str, *, now: float | None = None, option: str = "--since") -> float:
    """Unix seconds of ``text``: Unix seconds, ISO 8601 (UTC unless it says), or an age ago."""
    text = text.strip()
    now = time.time() if now is None else now
    if (age := _AGE.match(text)) is not None:
        return now - float(age.group(1)) * _UNIT[age.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: not a time; give ISO 8601 (2026-12-01T18:00:00Z), "
            "Unix seconds, or an age such as 90s, 10m, 2h, 1d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(at: float) -> str:
    """``2026-12-01T18:25:33.959Z``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str) and (" " in value or not value):
        return json.dumps(value)
    if isinstance(value, dict):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def format_line(seen: Observed) -> str:
    """One event as a line of text."""
    event = seen.event
    fields = " ".join(
        f"{k}={_value(v)}"
        for k, v in event.fields().items()
        if k not in ("supervisor", "child") and v is not None and v is not False
    )
    return (
        f"{iso(seen.time)} {seen.seq:>6} {category_of(event):<11} "
        f"{actor_of(event):<24} {kind_of(event):<14} {fields}"
    ).rstrip()


def to_json_line(seen: Observed) -> str:
    """One event as its wire record (with ``seq``), one JSON object."""
    return json.dumps(seen.record(), default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


async def print_events(
    fabric: Fabric,
    where: EventFilter,
    *,
    follow: bool,
    as_json: bool,
    out: TextIO | None = None,
) -> int:
    """Write the matching events to ``out`` (stdout); the number written."""
    out = out or sys.stdout
    written = 0
    async with _read(fabric, follow=follow, where=where) as events:
        async for seen in events:
            print(to_json_line(seen) if as_json else format_line(seen), file=out, flush=True)
            written += 1
    return written


def read_recorded(path: str) -> list[Observed]:
    """The events of a file written by ``diaspora events --json`` (one record a line).

    Raises :class:`~diaspora.errors.ConfigError` naming the file and line of
    a line that is not a JSON record.
    """
    seen: list[Observed] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the recorded events ({exc.strerror})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise ConfigError(
                f"{path}:{number}: not an event record; record events with "
                "`diaspora events --json > FILE`"
            )
        at = record.get("time")
        seq = record.pop("seq", number)
        when = float(at) if isinstance(at, int | float) else 0.0
        seen.append(Observed(seq=int(seq), time=when, event=decode_record(record)))
    return seen
