"""Pins: copies a view keeps of the source messages its groups refer to, before they expire.

A view item refers to source messages by ``(stream, seq)``; a source's
retention (``max_msgs``, ``max_age``…) may drop them before every consumer
has loaded the item. With ``on_stale = "pin"``, the view's :class:`PinKeeper`
watches each source's first sequence and copies every reference within
``pin_margin`` of it into the view's KV bucket ``diaspora-view-<name>``
(key ``<stream>.<seq>``), holding at most ``pin_budget`` bytes. With
``pin_storage`` (a :class:`~diaspora.storage.StorageSpec`) the copies go to
resilient storage (object ``<view>/<key>``, replicated or erasure-coded
over sites) and the KV keeps a stub naming the spec, so a reader finds them
without the setting and a site's loss loses no copy. When the budget
is full the copies of the oldest group go first (an :class:`~diaspora.events.Unpinned`
event with ``reason="budget"``). Copies are released once every durable
consumer of the view's output has acknowledged the item (its ack floor
reached the item's version), or when the view drops the group.
:func:`read_pin` is what :meth:`ViewItem.load` falls back to when the stream
no longer has a message.

>>> import anyio
>>> from diaspora.fabric import Fabric
>>> async def demo() -> None:
...     async with Fabric() as fabric:
...         pins = await Pins.open(fabric, "demo_view", budget=1 << 20)
...         copy = PinnedMessage("xs", {}, b"payload", 0.0)
...         await pins.put("g1", ("xs", 1), copy)
...         print((await read_pin(fabric, "demo_view", "xs", 1)).data, pins.has(("xs", 1)))
>>> anyio.run(demo)
b'payload' True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from diaspora import codec
from diaspora.errors import ConfigError, DecodeError, NotStored, StorageError
from diaspora.events import Event, Unpinned
from diaspora.fabric import Fabric, KeyValueBucket
from diaspora.log import get_logger
from diaspora.storage import Storage, StorageSpec

__all__ = ["PIN_BUCKET_PREFIX", "PinnedMessage", "Pins", "pin_bucket", "pin_key", "read_pin"]

#: A view's copies live in the KV bucket ``diaspora-view-<name>``.
PIN_BUCKET_PREFIX: Final = "diaspora-view-"

Ref = tuple[str, int]  # (stream, seq)


def pin_bucket(view: str) -> str:
    """The KV bucket holding view ``view``'s copies (``diaspora-view-<name>``)."""
    return PIN_BUCKET_PREFIX + "".join(c if c.isalnum() or c in "-_" else "_" for c in view)


def pin_key(stream: str, seq: int) -> str:
    """The key of the copy of message ``seq`` of ``stream``."""
    return f"{stream}.{seq}"


@dataclass(frozen=True, slots=True)
class PinnedMessage:
    """A copy of one stored source message: what loading its reference needs."""

    subject: str
    headers: Mapping[str, str]
    data: bytes
    timestamp: float

    def encode(self) -> bytes:
        return codec.encode(
            {
                "subject": self.subject,
                "headers": dict(self.headers),
                "data": self.data,
                "time": self.timestamp,
            }
        )

    @classmethod
    def decode(cls, raw: bytes, where: str) -> PinnedMessage:
        try:
            doc = codec.decode(raw)
            return cls(
                str(doc["subject"]), dict(doc["headers"]), bytes(doc["data"]), float(doc["time"])
            )
        except (DecodeError, KeyError, TypeError, ValueError) as exc:
            raise DecodeError(
                f"pinned copy {where} is unreadable ({exc!r}): delete the key"
            ) from exc


def _stub(value: bytes) -> dict[str, Any] | None:
    """The stub a copy kept in resilient storage leaves in the KV (``None``: the copy itself)."""
    try:
        doc = codec.decode(value)
    except DecodeError:
        return None
    return doc if isinstance(doc, dict) and "storage" in doc else None


async def read_pin(fabric: Fabric, view: str, stream: str, seq: int) -> PinnedMessage | None:
    """View ``view``'s copy of message ``seq`` of ``stream``, or ``None`` when it holds none."""
    kv = await fabric.ensure_kv(pin_bucket(view))
    entry = await kv.get(pin_key(stream, seq))
    if entry is None:
        return None
    where = f"{kv.name}/{entry.key}"
    stub = _stub(entry.value)
    if stub is None:
        return PinnedMessage.decode(entry.value, where)
    try:
        async with StorageSpec.from_dict(stub["storage"]).open(fabric) as storage:
            raw = await storage.get(str(stub["name"]))
    except NotStored:
        return None
    except (StorageError, ConfigError) as exc:
        raise DecodeError(f"pinned copy {where} in resilient storage: {exc}") from exc
    return PinnedMessage.decode(raw, where)


class Pins:
    """The copies one view holds, by owner (a group id), within ``budget`` bytes.

    An owner is the id of the group whose refs were copied; the oldest owner
    (first to pin) is evicted first when the budget is full. A copy two
    groups share counts once and goes when its last owner releases it.
    """

    def __init__(
        self,
        view: str,
        kv: KeyValueBucket,
        budget: int,
        *,
        actor: str = "",
        storage: Storage | None = None,
    ) -> None:
        self.view = view
        #: the actor holding the copies (events' ``name``; default the view's name)
        self.actor = actor or view
        self.budget = budget
        self._kv = kv
        #: where copies go (``None``: into the KV itself)
        self.storage = storage
        #: keys whose copy is in resilient storage (the KV holds a stub)
        self._stored: set[str] = set()
        self._sizes: dict[str, int] = {}
        #: owner -> keys, oldest owner first (dicts keep insertion order)
        self._owners: dict[str, set[str]] = {}
        self._log = get_logger(view=view)

    @classmethod
    async def open(
        cls,
        fabric: Fabric,
        view: str,
        *,
        budget: int,
        actor: str = "",
        storage: StorageSpec | None = None,
    ) -> Pins:
        """The view's bucket with the copies a previous run left (unowned until claimed)."""
        kv = await fabric.ensure_kv(pin_bucket(view))
        store = await storage.open(fabric).__aenter__() if storage is not None else None
        pins = cls(view, kv, budget, actor=actor, storage=store)
        for key in await kv.keys():
            entry = await kv.get(key)
            if entry is not None:
                stub = _stub(entry.value)
                pins._sizes[key] = int(stub["bytes"]) if stub else len(entry.value)
                if stub:
                    pins._stored.add(key)
        return pins

    @property
    def held(self) -> int:
        """Bytes of copies held now (as stored: payload, headers and a small envelope)."""
        return sum(self._sizes.values())

    @property
    def owners(self) -> list[str]:
        """Owners holding copies, oldest first."""
        return list(self._owners)

    def has(self, ref: Ref) -> bool:
        return pin_key(*ref) in self._sizes

    def size_of(self, ref: Ref) -> int:
        """Bytes the copy of ``ref`` takes of the budget (0: none held)."""
        return self._sizes.get(pin_key(*ref), 0)

    def claim(self, owner: str, ref: Ref) -> bool:
        """Add ``owner`` to an existing copy of ``ref`` (after a restart); whether one exists."""
        key = pin_key(*ref)
        if key not in self._sizes:
            return False
        self._owners.setdefault(owner, set()).add(key)
        return True

    async def put(self, owner: str, ref: Ref, copy: PinnedMessage) -> list[Event]:
        """Store ``copy`` of ``ref`` for ``owner``, evicting older owners to fit the budget.

        Returns the :class:`Unpinned` events of evictions. A copy larger than
        the whole budget, or one that only evicting ``owner`` itself would fit,
        is refused (``has(ref)`` stays false; the item may go stale).
        """
        key = pin_key(*ref)
        self._owners.setdefault(owner, set()).add(key)
        if key in self._sizes:
            return []
        value = copy.encode()
        own = sum(self._sizes.get(k, 0) for k in self._owners[owner])
        if own + len(value) > self.budget:  # evicting every other group would not make room
            self._owners[owner].discard(key)
            self._log.warning(
                "pin_refused", stream=ref[0], seq=ref[1], bytes=len(value), budget=self.budget
            )
            return []
        events: list[Event] = []
        while self.held + len(value) > self.budget:
            victim = next(o for o in self._owners if o != owner and self._owners[o])
            events += await self.release(victim, "budget")
        if self.storage is not None:
            name = f"{self.view}/{key}"
            await self.storage.put(name, value)
            stub = {"storage": self.storage.spec.as_dict(), "name": name, "bytes": len(value)}
            await self._kv.put(key, codec.encode(stub))
            self._stored.add(key)
        else:
            await self._kv.put(key, value)
        self._sizes[key] = len(value)
        return events

    async def release(self, owner: str, reason: str) -> list[Event]:
        """Drop ``owner``'s claim; delete the copies nobody else owns. One event if any went."""
        keys = self._owners.pop(owner, set())
        still = set().union(*self._owners.values()) if self._owners else set()
        gone = [k for k in keys if k not in still and k in self._sizes]
        return await self._delete(gone, reason)

    async def release_orphans(self) -> list[Event]:
        """Delete copies no owner claimed (left by groups a previous run finished with)."""
        owned = set().union(*self._owners.values()) if self._owners else set()
        return await self._delete([k for k in self._sizes if k not in owned], "dropped")

    async def _delete(self, keys: Iterable[str], reason: str) -> list[Event]:
        count = freed = 0
        for key in keys:
            await self._kv.delete(key)
            if key in self._stored and self.storage is not None:
                await self.storage.delete(f"{self.view}/{key}")
                self._stored.discard(key)
            freed += self._sizes.pop(key)
            count += 1
        if not count:
            return []
        return [
            Unpinned(
                name=self.actor,
                view=self.view,
                count=count,
                bytes=freed,
                held=self.held,
                reason=reason,
            )
        ]


def refs_of(item: Mapping[str, Any]) -> list[Ref]:
    """The stream references of a view item record (``refs``: source -> [[stream, seq, …], …])."""
    out: list[Ref] = []
    for refs in (item.get("refs") or {}).values():
        out += [(str(r[0]), int(r[1])) for r in refs]
    return out
