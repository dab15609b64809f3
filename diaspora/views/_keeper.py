"""The pin keeper: the stage of a ``on_stale = "pin"`` view that copies refs before they expire.

Between batches (and on idle ticks), at most every ``interval`` seconds, it

1. reads the items the view published on its output since the last sweep
   (their refs stay owned by their group until acknowledged);
2. releases the copies of every item all durable consumers of the output
   have acknowledged (their ack floor reached the item's version);
3. asks each source stream for its first sequence and copies every
   reference of an open group or an unacknowledged item that lies within
   ``margin`` messages of it into the view's bucket (:class:`Pins`).

A reference already gone when first seen cannot be copied: it is reported
once with an :class:`~diaspora.events.ItemStale` (version 0) and the
item will raise :class:`~diaspora.errors.Stale` when loaded. Choose
``pin_margin`` above what a source receives in ``pin_interval`` seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from diaspora import codec
from diaspora.errors import ConfigError, DecodeError, StreamNotFound
from diaspora.events import Event, ItemStale, Pinned
from diaspora.fabric import ack_floors, get_many, read_stored, stream_name
from diaspora.stage import Stage
from diaspora.views._pins import PinnedMessage, Pins, Ref, refs_of

if TYPE_CHECKING:
    from diaspora.fabric import Fabric
    from diaspora.stage import Host
    from diaspora.views._spec import View

__all__ = ["Fetch", "PinKeeper", "fetch_stored", "group_id", "open_refs_of"]

#: Reads stored source messages by reference (``None``: the stream no longer has it).
Fetch = Callable[["Fabric", Sequence[Ref]], Awaitable[dict[Ref, PinnedMessage | None]]]
#: The view's open groups now: ``(group id, refs)`` each.
OpenRefs = Callable[[], Iterable[tuple[str, Sequence[Ref]]]]


def open_refs_of(host: Host) -> OpenRefs:
    """The open groups of the view running in ``host`` (its actor's view stage's grouper)."""
    stage = getattr(getattr(host, "actor", None), "stage", None)
    grouper = getattr(stage, "grouper", None)
    if grouper is None:
        raise ConfigError(f"actor {host.id!r}: a view's pin or snapshot stage runs only in a view")

    def refs() -> list[tuple[str, list[Ref]]]:
        return [
            (
                group_id(g.key, g.generation),
                [(str(r[0]), int(r[1])) for rs in g.refs.values() for r in rs],
            )
            for g in grouper.groups()
        ]

    return refs


def group_id(key: Sequence[Any], generation: int) -> str:
    """The id of the group of ``key`` and ``generation`` (owns its copies; stable across runs)."""
    return codec.encode([list(key), generation]).hex()


async def fetch_stored(fabric: Fabric, refs: Sequence[Ref]) -> dict[Ref, PinnedMessage | None]:
    """Copies of ``refs`` read from their streams with batched direct gets (``None``: gone).

    Payloads offloaded to the object store stay references: the copy is the
    stored message as it is (its blob outlives the stream's retention).
    """
    by_stream: dict[str, list[int]] = {}
    for stream, seq in refs:
        by_stream.setdefault(stream, []).append(seq)
    got: dict[Ref, PinnedMessage | None] = {}
    for stream, seqs in by_stream.items():
        for seq, m in (await get_many(fabric, stream, seqs, resolve_blobs=False)).items():
            got[(stream, seq)] = (
                None if m is None else PinnedMessage(m.subject, m.headers, m.payload, m.timestamp)
            )
    return got


class PinKeeper(Stage):
    """Keeps copies of the refs of view ``view`` that are about to expire (see the module doc)."""

    name = "view_pins"

    def __init__(
        self,
        view: View,
        *,
        interval: float = 1.0,
        fetch: Fetch = fetch_stored,
        open_refs: OpenRefs | None = None,
    ) -> None:
        self.view = view.name
        self.output = view.output
        self.sources = view.subjects
        self.budget = int(view.pin_budget)
        self.margin = view.pin_margin
        self.storage = view.pin_storage
        self.interval = interval
        self._open_refs = open_refs
        self._fetch = fetch
        self._host: Host | None = None
        self.pins: Pins | None = None
        #: version -> (group id, refs) of items published and not yet acknowledged by all
        self._items: dict[int, tuple[str, list[Ref]]] = {}
        self._scanned = 0
        self._last_sweep = float("-inf")
        self._reported: set[Ref] = set()
        self._orphans_checked = False
        #: sweeps done since this start
        self.sweeps = 0

    def tick(self) -> float | None:
        return self.interval

    async def setup(self, host: Host) -> None:
        self._host = host
        if self._open_refs is None:
            self._open_refs = open_refs_of(host)
        on_drop = getattr(getattr(getattr(host, "actor", None), "stage", None), "on_drop", None)
        if on_drop is not None:
            on_drop.append(self._group_dropped)
        self.pins = await Pins.open(
            host.fabric, self.view, budget=self.budget, actor=host.id, storage=self.storage
        )
        await host.fabric.require_stream(self.output)
        floors = await ack_floors(host.fabric, self.output)
        self._scanned = min(floors.values()) if floors else 0

    async def after_batch(self) -> None:
        assert self._host is not None
        now = self._host.clock.monotonic()
        if now - self._last_sweep < self.interval:
            return
        self._last_sweep = now
        for event in await self.sweep():
            await self._host.event(event)

    async def _group_dropped(self, group: Any) -> None:
        await self.dropped(group_id(group.key, group.generation))

    async def dropped(self, group: str) -> None:
        """The view dropped ``group`` (incomplete or stale): release its copies."""
        assert self.pins is not None
        assert self._host is not None
        for event in await self.pins.release(group, "dropped"):
            await self._host.event(event)

    async def sweep(self) -> list[Event]:
        """One round of scan, release and copy; the events it produced."""
        assert self.pins is not None
        assert self._host is not None
        fabric = self._host.fabric
        self.sweeps += 1
        events: list[Event] = []
        async for msg in read_stored(fabric, self.output, start_seq=self._scanned + 1):
            self._scanned = msg.seq
            try:
                record = codec.decode(msg.payload)
            except DecodeError:
                continue
            if isinstance(record, Mapping) and record.get("view") == self.view:
                gid = group_id(record.get("key") or [], int(record.get("generation", 0)))
                self._items[msg.seq] = (gid, refs_of(record))
        floors = await ack_floors(fabric, self.output)
        if floors:  # with no durable consumer yet, nobody has read the items: keep them
            floor = min(floors.values())
            for version in [v for v in self._items if v <= floor]:
                gid, _ = self._items.pop(version)
                events += await self.pins.release(gid, "acked")
        events += await self._copy_at_risk(fabric, await self._firsts(fabric))
        if not self._orphans_checked:
            self._orphans_checked = True
            events += await self.pins.release_orphans()
        return events

    async def _firsts(self, fabric: Fabric) -> dict[str, int]:
        firsts: dict[str, int] = {}
        for subject in self.sources:
            try:
                firsts[stream_name(subject)] = (await fabric.stream_bounds(subject))[0]
            except StreamNotFound:
                continue
        return firsts

    async def _copy_at_risk(self, fabric: Fabric, firsts: Mapping[str, int]) -> list[Event]:
        assert self.pins is not None
        assert self._open_refs is not None
        owners = list(self._open_refs()) + [(gid, refs) for gid, refs in self._items.values()]
        wanted: dict[Ref, list[str]] = {}
        for owner, refs in owners:
            for ref in refs:
                if self.pins.claim(owner, ref) or ref[0] not in firsts:
                    continue  # held already, or not a source stream (another view's item)
                if ref[1] < firsts[ref[0]] + self.margin:
                    wanted.setdefault(ref, []).append(owner)
        if not wanted:
            return []
        events: list[Event] = []
        copies = await self._fetch(fabric, list(wanted))
        count = nbytes = 0
        for ref, owners_of in wanted.items():
            copy = copies.get(ref)
            if copy is None:
                if ref not in self._reported:
                    self._reported.add(ref)
                    events.append(
                        ItemStale(
                            name=self.pins.actor,
                            view=self.view,
                            version=0,
                            stream=ref[0],
                            seq=ref[1],
                        )
                    )
                continue
            for owner in owners_of:
                events += await self.pins.put(owner, ref, copy)
            if self.pins.has(ref):
                count += 1
                nbytes += self.pins.size_of(ref)
        if count:
            events.append(
                Pinned(
                    name=self.pins.actor,
                    view=self.view,
                    count=count,
                    bytes=nbytes,
                    held=self.pins.held,
                    budget=self.budget,
                )
            )
        return events
