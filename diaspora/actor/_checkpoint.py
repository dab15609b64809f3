"""Checkpoints: one atomic record of an actor's state and the input positions it includes.

A checkpoint lives under the actor's id in the KV bucket ``diaspora-checkpoints``
(of the connected site, or a :class:`CheckpointStore`'s). The record is a msgpack
map (see :class:`Checkpoint`) whose ``state`` is the actor's ``snapshot()``
encoded with :mod:`diaspora.codec`; a state that would make the record larger
than one KV value (:attr:`~diaspora.fabric.Fabric.inline_limit`, ``max_payload``
less header room) goes to the object store of the same name and the record
names it (``state_ref``), read back with its SHA-256 checked. With a
``storage`` spec (an actor's ``checkpoint_storage``) it goes to resilient
storage instead, chunked over sites (:mod:`diaspora.actor._largestate`).

Writes are compare-and-set on the KV revision, which *fences* stale instances:
every start claims the record (bumping ``epoch``), so an older instance still alive
fails its next write with :class:`~diaspora.errors.FencedOut`, not overwriting it.

>>> import anyio
>>> from diaspora.fabric import Fabric
>>> async def demo() -> None:
...     async with Fabric() as fabric:
...         slot = await CheckpointSlot.claim(fabric, "sum")
...         print(slot.current)                          # nothing saved yet
...         await slot.save(positions={"numbers": 41}, state={"total": 7})
...         again = await CheckpointSlot.claim(fabric, "sum")
...         print(again.current.positions, again.current.state, again.epoch)
>>> anyio.run(demo)
None
{'numbers': 41} {'total': 7} 2
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

import anyio

from diaspora import codec
from diaspora.actor import _largestate
from diaspora.actor._checkpointstore import CheckpointStore
from diaspora.errors import (
    CheckpointError,
    DecodeError,
    FabricUnavailable,
    FencedOut,
    RevisionMismatch,
)
from diaspora.fabric import KeyValueBucket
from diaspora.log import get_logger

__all__ = [
    "CHECKPOINT_BUCKET",
    "Checkpoint",
    "CheckpointSlot",
    "FailureNote",
    "Section",
    "kv_key",
]

#: KV bucket (and object store) holding every actor's checkpoint.
CHECKPOINT_BUCKET: Final = "diaspora-checkpoints"
#: 1: feature fields at the top level (up to 0.1); 2: positions, state and named sections.
_FORMAT: Final = 2
_READABLE_FORMATS: Final = frozenset({1, 2})
if TYPE_CHECKING:
    from diaspora.storage import StorageSpec

_KEY_BAD = re.compile(r"[^-_.A-Za-z0-9]")


def kv_key(actor: str) -> str:
    """The KV key of an actor id (characters KV keys refuse become ``_``)."""
    return _KEY_BAD.sub("_", actor).strip(".") or "_"


@dataclass(frozen=True, slots=True)
class Section:
    """One stage's part of a checkpoint: its content and the version it was written with."""

    version: int
    data: Any


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One saved checkpoint: positions, state, and the sections stages keep.

    ``positions[subject]`` is the last stream sequence of that input whose
    effect ``state`` includes; a restart consumes from ``position + 1``.
    ``sections[name]`` belongs to the runtime stage of that name (for
    example ``outputs``: the last item number and stream sequence per output
    subject; ``recovery``: the last item number and payload per input and
    producer), each with its own version, so a stage added later keeps its
    state without changing the record's format.
    """

    actor: str
    version: int
    epoch: int
    instance: str
    positions: Mapping[str, int] = field(default_factory=dict)
    sections: Mapping[str, Section] = field(default_factory=dict)
    state: Any = None
    snapshot_at: float = 0.0
    written_at: float = 0.0
    state_ref: str | None = None
    #: the worker the actor runs on (set by a migratable actor's claim; ``None``: anywhere)
    placement: str | None = None

    def section(self, name: str) -> Any:
        """The content of section ``name`` (``{}`` when the record has none)."""
        found = self.sections.get(name)
        return found.data if found is not None else {}


@dataclass(frozen=True, slots=True)
class FailureNote:
    """How often ``handle`` failed on one input, why, and whether it was dead-lettered.

    ``subject``/``seq`` name the stream message being processed (a replayed
    or reconstructed item is noted against the message whose arrival revealed
    its gap); ``source`` names the input itself (default ``<subject>:<seq>``).
    A note is kept until a checkpoint's position covers that stream message.
    """

    subject: str
    seq: int
    attempts: int
    reason: str
    traceback: str = ""
    source: str = ""
    #: moved to the dead-letter subject: a restart skips the input instead of handling it
    dead: bool = False

    def __post_init__(self) -> None:
        if not self.source:
            object.__setattr__(self, "source", f"{self.subject}:{self.seq}")


class CheckpointSlot:
    """The checkpoint record of one actor, owned by one running instance.

    Obtain it with :meth:`claim`, which loads the newest checkpoint and fences
    out any older instance; then :meth:`save` as often as needed. An encoded
    state larger than ``inline_limit`` bytes (default: whatever keeps the
    record within one KV value of the connected server) goes to the object store.
    """

    def __init__(
        self,
        fabric: CheckpointStore,
        actor: str,
        kv: KeyValueBucket,
        *,
        instance: str,
        inline_limit: int | None = None,
        storage: StorageSpec | None = None,
    ) -> None:
        self._fabric = fabric
        #: where a state too large for the record goes (``None``: the object store)
        self.storage = storage
        self.actor = actor
        self.key = kv_key(actor)
        self._kv = kv
        self.instance = instance
        self.inline_limit = inline_limit
        self.current: Checkpoint | None = None
        self.epoch = 0
        self._revision: int | None = None
        #: where the record says the actor runs (see :meth:`claim`)
        self.placement: str | None = None
        self._legacy_note_gone = False
        self._writing = anyio.Lock()
        self._log = get_logger(actor=actor)

    @classmethod
    async def claim(
        cls,
        fabric: CheckpointStore,
        actor: str,
        *,
        inline_limit: int | None = None,
        expect_epoch: int | None = None,
        placement: str | None = None,
        load_state: bool = True,
        storage: StorageSpec | None = None,
    ) -> CheckpointSlot:
        """Load the newest checkpoint of ``actor`` and take ownership of the record.

        ``expect_epoch`` makes the claim conditional: it raises
        :class:`FencedOut` unless the record's epoch is still that one (a
        migration's switch, decided by compare-and-set). ``placement`` is
        written into the record (the worker the actor now runs on).
        ``load_state=False`` leaves ``current.state`` ``None`` (the caller
        has the state already) and keeps the stored state untouched. ``storage``
        keeps a large state in resilient storage (an actor's ``checkpoint_storage``).
        """
        kv = await fabric.ensure_kv(CHECKPOINT_BUCKET)
        slot = cls(fabric, actor, kv, instance=uuid.uuid4().hex, inline_limit=inline_limit)
        slot.storage = storage
        await slot._claim(expect_epoch, placement, load_state)
        return slot

    @classmethod
    async def peek(
        cls, fabric: CheckpointStore, actor: str, *, state: bool = False
    ) -> Checkpoint | None:
        """The stored record of ``actor`` (its state too if ``state``), without claiming it."""
        slot = cls(fabric, actor, await fabric.ensure_kv(CHECKPOINT_BUCKET), instance="peek")
        entry = await slot._get(slot.key)
        return None if entry is None else await slot._unpack(entry[0], load_state=state)

    async def reclaim(self) -> None:
        """Claim the record again at the epoch this instance holds, bumping it (so a
        conditional claim made against the old epoch fails); :class:`FencedOut` if
        another instance owns it already."""
        async with self._writing:
            current = self.current
            await self._claim(self.epoch, self.placement, load_state=False)
            self.current = current

    async def _claim(
        self, expect_epoch: int | None = None, placement: str | None = None, load_state: bool = True
    ) -> None:
        for _ in range(10):
            entry = await self._get(self.key)
            if entry is None:
                if expect_epoch is not None:
                    raise FencedOut(f"actor {self.actor!r}: no checkpoint record to take over")
                claim = Checkpoint(
                    self.actor, version=0, epoch=1, instance=self.instance, placement=placement
                )
                try:
                    self._revision = await self._kv.create(self.key, self._pack(claim, None))
                except RevisionMismatch:
                    continue  # someone created it meanwhile: read theirs
                self.epoch, self.placement = 1, placement
                return
            value, revision = entry
            existing = await self._unpack(value, load_state=load_state)
            if expect_epoch is not None and existing.epoch != expect_epoch:
                raise FencedOut(
                    f"actor {self.actor!r}: checkpoint epoch is {existing.epoch}, not the "
                    f"expected {expect_epoch}: another instance took it over"
                )
            epoch = existing.epoch + 1
            try:
                self._revision = await self._kv.update(
                    self.key, self._reclaimed(value, existing, epoch, placement), last=revision
                )
            except RevisionMismatch:
                continue
            self.epoch, self.placement = epoch, placement
            self.current = existing if existing.version > 0 else None
            return
        raise CheckpointError(
            f"actor {self.actor!r}: could not claim checkpoint key {self.key!r} in "
            f"{CHECKPOINT_BUCKET!r}: other instances keep writing it; is the actor running twice?"
        )

    def _reclaimed(
        self, value: bytes, existing: Checkpoint, epoch: int, placement: str | None
    ) -> bytes:
        """The stored record with a new owner (its state bytes untouched)."""
        doc = codec.decode(value)
        if doc.get("format") != _FORMAT:  # an old record is rewritten in the current format
            record = replace(existing, epoch=epoch, instance=self.instance, placement=placement)
            return self._pack(record, existing.state_ref)
        doc.update(epoch=epoch, instance=self.instance, placement=placement)
        return codec.encode(doc)

    async def save(
        self,
        *,
        positions: Mapping[str, int],
        state: Any = None,
        sections: Mapping[str, Section] | None = None,
        snapshot_at: float | None = None,
        encoded_state: bytes | None = None,
    ) -> Checkpoint:
        """Write a new checkpoint atomically (compare-and-set); return it.

        ``encoded_state`` may carry ``codec.encode(state)`` made earlier (the
        actor runtime encodes at snapshot time so the state cannot change
        under it). Raises :class:`FencedOut` when a newer instance owns the
        record, :class:`CheckpointError` when the fabric refuses the write.
        """
        blob = encoded_state if encoded_state is not None else codec.encode(state)
        previous = self.current
        version = (previous.version if previous else 0) + 1
        record = Checkpoint(
            actor=self.actor,
            version=version,
            epoch=self.epoch,
            instance=self.instance,
            positions=dict(positions),
            sections=dict(sections or {}),
            state=state,
            snapshot_at=snapshot_at if snapshot_at is not None else time.time(),
            written_at=time.time(),
            placement=self.placement,
        )
        # the record must fit one KV value, whose limit is the connected server's
        kv_limit = self._fabric.inline_limit
        state_limit = kv_limit if self.inline_limit is None else min(self.inline_limit, kv_limit)
        value = self._pack(record, None, blob) if len(blob) <= state_limit else None
        if value is None or len(value) > kv_limit:
            try:
                ref = await _largestate.store_state(
                    self._fabric, CHECKPOINT_BUCKET, f"{self.key}/{version}", blob, self.storage
                )
            except Exception as exc:
                raise CheckpointError(
                    f"actor {self.actor!r}: storing {len(blob)} bytes of state in "
                    f"{self.storage or CHECKPOINT_BUCKET!r} failed: {exc!r}"
                ) from exc
            record = replace(record, state_ref=ref)
            value = self._pack(record, record.state_ref, None)
        async with self._writing:
            await self._write(value, version)
        self.current = record
        if previous is not None and previous.state_ref:
            await _largestate.delete_state(
                self._fabric, previous.state_ref, self.storage, self._log
            )
        return record

    async def _write(self, value: bytes, version: int) -> None:
        try:
            self._revision = await self._kv.update(self.key, value, last=self._revision)
            return
        except RevisionMismatch:
            pass
        except (FabricUnavailable, OSError, TimeoutError) as exc:
            raise CheckpointError(
                f"actor {self.actor!r}: checkpoint write to {CHECKPOINT_BUCKET}/{self.key} "
                f"failed: {exc!r}"
            ) from exc
        # The revision moved: either our own earlier write landed although its
        # answer was lost, or a newer instance claimed the record.
        entry = await self._get(self.key)
        if entry is not None:
            stored = await self._unpack(entry[0], load_state=False)
            if stored.instance == self.instance and stored.epoch == self.epoch:
                self._revision = entry[1]
                if stored.version < version:
                    await self._write(value, version)
                return
            raise FencedOut(
                f"actor {self.actor!r}: checkpoint owned by a newer instance (epoch "
                f"{stored.epoch} > {self.epoch}); this instance must stop"
            )
        raise FencedOut(f"actor {self.actor!r}: checkpoint record vanished while running")

    async def failures(self) -> dict[str, FailureNote]:
        """The failure notes kept for this actor, by input (``FailureNote.source``)."""
        notes: dict[str, FailureNote] = {}
        for key, many in ((f"{self.key}.failure", False), (self._failures_key, True)):
            entry = await self._get(key)  # ".failure": the single note of diaspora <= 0.2
            if entry is None:
                continue
            try:
                raw = codec.decode(entry[0])
                for item in raw["notes"] if many else [raw]:
                    note = _note_of(item)
                    notes[note.source] = note
            except (DecodeError, KeyError, TypeError, ValueError):
                self._log.warning("failure_notes_unreadable", key=key)
        return notes

    async def keep_failures(self, notes: Collection[FailureNote]) -> None:
        """Replace the failure notes with ``notes`` (one KV value next to the checkpoint)."""
        if notes:
            record = {"format": 1, "notes": [_note_map(note) for note in notes]}
            await self._kv.put(self._failures_key, codec.encode(record))
        else:
            await self._kv.delete(self._failures_key)
        if not self._legacy_note_gone:
            await self._kv.delete(f"{self.key}.failure")
            self._legacy_note_gone = True

    @property
    def _failures_key(self) -> str:
        return f"{self.key}.failures"

    # -- encoding ------------------------------------------------------------------

    def _pack(self, record: Checkpoint, state_ref: str | None, blob: bytes | None = None) -> bytes:
        doc = {
            "format": _FORMAT,
            "actor": record.actor,
            "version": record.version,
            "epoch": record.epoch,
            "instance": record.instance,
            "positions": dict(record.positions),
            "sections": {
                name: {"v": sec.version, "data": sec.data} for name, sec in record.sections.items()
            },
            "snapshot_at": record.snapshot_at,
            "written_at": record.written_at,
            "state_ref": state_ref,
            "state_store": self.storage.as_dict() if self.storage and state_ref else None,
            "state": blob,
            "placement": record.placement,
        }
        if blob is None and state_ref is None and record.version > 0:
            doc["state"] = codec.encode(record.state)
        return codec.encode(doc)

    async def _unpack(self, value: bytes, *, load_state: bool = True) -> Checkpoint:
        where = f"checkpoint {CHECKPOINT_BUCKET}/{self.key}"
        try:
            doc = codec.decode(value)
            if doc.get("format") not in _READABLE_FORMATS:
                raise CheckpointError(
                    f"{where}: unknown format {doc.get('format')!r} (this version reads "
                    f"{sorted(_READABLE_FORMATS)}); was it written by a newer diaspora?"
                )
            state: Any = None
            state_ref = doc.get("state_ref")
            if load_state:
                if state_ref:
                    stored = await _largestate.load_state(
                        self._fabric, self.actor, self.key, state_ref, doc.get("state_store")
                    )
                    state = codec.decode(stored)
                elif doc.get("state") is not None:
                    state = codec.decode(doc["state"])
            return Checkpoint(
                actor=str(doc["actor"]),
                version=int(doc["version"]),
                epoch=int(doc["epoch"]),
                instance=str(doc["instance"]),
                positions={str(k): int(v) for k, v in doc["positions"].items()},
                sections=_sections_of(doc),
                state=state,
                snapshot_at=float(doc.get("snapshot_at", 0.0)),
                written_at=float(doc.get("written_at", 0.0)),
                state_ref=state_ref,
                placement=doc.get("placement"),
            )
        except CheckpointError:
            raise
        except (DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{where} is unreadable ({exc!r}); delete the key to start the actor afresh"
            ) from exc

    async def _get(self, key: str) -> tuple[bytes, int] | None:
        entry = await self._kv.get(key)
        if entry is None:
            return None
        return entry.value, entry.revision


def _note_map(note: FailureNote) -> dict[str, Any]:
    # a dead-lettered input's traceback is in its dead letter: the note only has to say "skip"
    return {
        "subject": note.subject,
        "seq": note.seq,
        "source": note.source,
        "attempts": note.attempts,
        "dead": note.dead,
        "reason": note.reason[:400],
        "traceback": "" if note.dead else note.traceback[-8_000:],
    }


def _note_of(raw: Mapping[str, Any]) -> FailureNote:
    return FailureNote(
        subject=str(raw["subject"]),
        seq=int(raw["seq"]),
        attempts=int(raw["attempts"]),
        reason=str(raw["reason"]),
        traceback=str(raw.get("traceback", "")),
        source=str(raw.get("source", "")),
        dead=bool(raw.get("dead", False)),
    )


def _sections_of(doc: Mapping[str, Any]) -> dict[str, Section]:
    """The sections of a stored record; format 1's top-level fields become sections."""
    if doc.get("format") == 1:
        return {
            "outputs": Section(
                1, {"items": doc.get("items", {}), "out_seqs": doc.get("out_seqs", {})}
            ),
            "recovery": Section(1, {"seen": doc.get("seen", {}), "tails": doc.get("tails", {})}),
        }
    return {
        str(name): Section(int(raw["v"]), raw["data"])
        for name, raw in doc.get("sections", {}).items()
    }
