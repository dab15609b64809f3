"""Holes in a bridge: origin messages that never reached the destination, and origin sizing.

"Nothing lost" across a bridge holds only while the origin stream still
has the messages when the link returns: an edge stream whose limits drop
messages during an outage loses them silently (the destination simply
carries on after the hole). The destination copy tells: an up bridge's
copies carry the origin sequence in ``Nats-Stream-Source``; a mirror keeps
the origin's sequences as its own. :class:`GapTracker` follows them,
:class:`BridgeMonitor` scans the copy as it grows and reports each hole as a
:class:`~diaspora.events.Lost` event (``by="origin"``: origin stream sequences).

Size the origin so it does not happen: :func:`origin_limits` from the
declared rate and the longest outage to survive, or ``discard="new"`` so
the instrument is refused (``StreamFull``) instead of older data vanishing.

>>> tracker = GapTracker(up=True)
>>> [tracker.observe(s, {"Nats-Stream-Source": f"X:abc {o} > > x.y tok"})
...  for s, o in [(1, 1), (2, 2), (3, 7)]]
[None, None, (3, 6)]
>>> GapTracker(up=True).observe(1, {"Nats-Stream-Source": "X:abc 151 > > x.y tok"})
(1, 150)
>>> origin_limits(rate=1000, longest_outage=60, message_bytes=256).max_msgs
120000
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Final, Literal

import anyio

from diaspora.errors import ConfigError, FabricUnavailable, StreamNotFound
from diaspora.events import EventSink, Lost
from diaspora.fabric._bridges import Bridge, Direction
from diaspora.fabric._reader import read_stored
from diaspora.fabric._streams import DEFAULT_DUPLICATE_WINDOW, StreamLimits
from diaspora.log import get_logger

if TYPE_CHECKING:
    from diaspora.fabric._fabric import Fabric

__all__ = ["STREAM_SOURCE", "BridgeMonitor", "GapTracker", "origin_limits", "origin_of"]

#: Header the server adds to each sourced copy: ``<name>:<api hash> <seq> <filter> <transform>
#: <subject> <origin identity>``.
STREAM_SOURCE: Final = "Nats-Stream-Source"
#: Where monitors that ``keep`` their scan position keep it (one key per bridge).
_POSITIONS: Final = "diaspora-bridges"


def origin_of(headers: dict[str, str] | None) -> tuple[int, str] | None:
    """``(origin sequence, origin identity)`` of a sourced copy; ``None`` when not one.

    The identity names the origin stream and its domain, and changes when
    the origin stream is deleted and recreated (its sequences start again at 1).

    >>> origin_of({"Nats-Stream-Source": "EDGE:n1VdnVvB 42 > > edge.ev.det1 MRKx1Qr3"})
    (42, 'EDGE:n1VdnVvB MRKx1Qr3')
    """
    value = (headers or {}).get(STREAM_SOURCE)
    if not value:
        return None
    parts = value.split(" ")
    try:
        seq = int(parts[1])
    except (IndexError, ValueError):
        return None
    return seq, f"{parts[0]} {parts[5]}" if len(parts) > 5 else parts[0]


class GapTracker:
    """Feed it each destination message in order; it answers the origin range skipped before it.

    An up bridge's copy may interleave several origins (one stream per edge
    aggregated at a hub): each origin's sequences are followed on their own.
    """

    def __init__(self, *, up: bool, from_start: bool = True) -> None:
        self.up = up
        #: whether it is fed the copy from its first message ever: then an up bridge's first
        #: copy of an origin after origin sequence 1 reveals a hole before it (``1..seq-1``)
        self.from_start = from_start
        #: The last origin sequence seen, per origin (``""``: a mirror's own sequences).
        self.last_origin: dict[str, int] = {}

    def observe(self, seq: int, headers: dict[str, str] | None) -> tuple[int, int] | None:
        """``(first, last)`` origin sequences missing just before this message, else ``None``."""
        if self.up:
            found = origin_of(headers)
            if found is None:
                return None  # not a sourced copy (published at the destination directly)
            origin, identity = found
        else:
            origin, identity = seq, ""
        previous = self.last_origin.get(identity)
        self.last_origin[identity] = origin
        if previous is None and self.up and self.from_start:
            previous = 0  # the origin's first copy: what came before it never arrived
        if previous is not None and origin > previous + 1:
            return previous + 1, origin - 1
        return None


class BridgeMonitor:
    """Scans ``bridge``'s destination copy every ``interval`` s and reports holes as ``Lost``.

    Run it in a task group (:meth:`run` returns only when cancelled); each
    hole is emitted once to ``sink`` (the fabric by default) and kept in
    :attr:`gaps`. It starts at ``start_seq`` of the copy (default: its first).

    >>> async def watch(fabric: Fabric, bridge: Bridge) -> None:
    ...     async with anyio.create_task_group() as tg:
    ...         tg.start_soon(BridgeMonitor(fabric, bridge).run)
    """

    def __init__(
        self,
        fabric: Fabric,
        bridge: Bridge,
        *,
        sink: EventSink | None = None,
        interval: float = 1.0,
        start_seq: int = 1,
        keep: bool = False,
    ) -> None:
        self.fabric = fabric
        #: keep the scan position in KV (bucket ``diaspora-bridges``), so a monitor started
        #: again goes on where the last one stopped: each hole is reported once, ever
        self.keep = keep
        self.bridge = bridge
        self.sink: EventSink = sink if sink is not None else fabric
        self.interval = interval
        self.next_seq = max(1, start_seq)
        self.tracker = GapTracker(up=bridge.direction is Direction.UP, from_start=start_seq <= 1)
        #: The holes reported so far, as (first, last) origin sequences.
        self.gaps: list[tuple[int, int]] = []
        self._log = get_logger(bridge=bridge.name)

    async def scan(self) -> list[tuple[int, int]]:
        """Read the copy from where the last scan stopped; report and return new holes."""
        found: list[tuple[int, int]] = []
        bridge = self.bridge
        async for stored in read_stored(
            self.fabric,
            bridge.subject,
            start_seq=self.next_seq,
            headers_only=True,
            stream=bridge.stream,
            domain=bridge.to_domain,
        ):
            if stored.seq > self.next_seq and not self.tracker.last_origin:
                # the copy no longer starts where this scan did (its own limits removed
                # messages): their origins are unknown, so no hole is inferred before the first
                self.tracker.from_start = False
            self.next_seq = stored.seq + 1
            gap = self.tracker.observe(stored.seq, stored.headers)
            if gap is None:
                continue
            found.append(gap)
            self.gaps.append(gap)
            first, last = gap
            await self.sink.emit(
                Lost(
                    name=bridge.name,
                    subject=bridge.subject,
                    producer=bridge.from_domain,
                    first=first,
                    last=last,
                    count=last - first + 1,
                    by="origin",
                )
            )
        return found

    async def run(self) -> None:
        """Scan forever; a scan that fails (link down, stream not there yet) is retried."""
        key = self.bridge.name.replace("@", ".")
        bucket = await self.fabric.ensure_kv(_POSITIONS) if self.keep else None
        if bucket is not None and (entry := await bucket.get(key)) is not None:
            kept = json.loads(entry.value)
            self.next_seq = max(self.next_seq, int(kept["next_seq"]))
            self.tracker.last_origin = {str(k): int(v) for k, v in kept["last_origin"].items()}
        while True:
            try:
                before = self.next_seq
                await self.scan()
                if bucket is not None and self.next_seq != before:
                    kept = {"next_seq": self.next_seq, "last_origin": self.tracker.last_origin}
                    await bucket.put(key, json.dumps(kept).encode())
            except (FabricUnavailable, StreamNotFound, TimeoutError) as exc:
                self._log.debug("bridge_scan_failed", error=repr(exc))
            await anyio.sleep(self.interval)


def origin_limits(
    *,
    rate: float,
    longest_outage: float,
    message_bytes: int | None = None,
    margin: float = 2.0,
    discard: Literal["old", "new"] = "old",
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
) -> StreamLimits:
    """Limits for an origin stream that keeps ``rate`` msg/s through ``longest_outage`` s.

    Keeps ``margin`` times what the outage accumulates (``max_msgs``, and
    ``max_bytes`` when ``message_bytes`` is given). With ``discard="new"`` a
    full stream refuses new messages (the publisher sees
    :class:`~diaspora.errors.StreamFull`) instead of dropping the oldest.

    >>> origin_limits(rate=50, longest_outage=600, discard="new").discard
    'new'
    """
    for name, value in (("rate", rate), ("longest_outage", longest_outage), ("margin", margin)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ConfigError(f"origin_limits: {name}={value!r} must be a positive number")
    if message_bytes is not None and message_bytes < 1:
        raise ConfigError(f"origin_limits: message_bytes={message_bytes!r} must be >= 1")
    max_msgs = math.ceil(rate * longest_outage * margin)
    return StreamLimits(
        max_msgs=max_msgs,
        max_bytes=max_msgs * message_bytes if message_bytes is not None else None,
        duplicate_window=duplicate_window,
        discard=discard,
    )
