"""A view item as a consumer sees it: :class:`ViewItem`, and resolving its references.

A view publishes each group as a small record of references,
``{"view", "key", "generation", "complete", "refs": {source: [[stream, seq,
subject, flag], ...]}}``; its sequence on the view's output stream is its
version. :meth:`ViewItem.load` fetches every referenced message with direct
gets, all of the item's at once, and decodes them. A reference the stream no
longer has raises :class:`~diaspora.errors.Stale`: never another payload.
A reference to another view's item (a view over views) loads as that item,
itself loaded.

>>> from diaspora import Message
>>> record = {"view": "train", "key": ["s1", 4], "generation": 0, "complete": True,
...           "refs": {"diff": [["ptycho_diff", 7, "ptycho.diff", ""]]}}
>>> item = ViewItem.of(Message(data=record, subject="views.train", seq=12))
>>> item.version, item.key, item.refs["diff"][0].seq
(12, ('s1', 4), 7)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

from diaspora import codec
from diaspora.errors import DecodeError, Stale
from diaspora.fabric import Fabric, StoredMsg, get_many
from diaspora.fabric import headers as H
from diaspora.message import Message
from diaspora.views._pins import read_pin

__all__ = ["Loaded", "Ref", "ViewItem"]

#: How deep views over views are loaded (a cycle cannot make load() recurse forever).
MAX_DEPTH: Final = 8

#: What :meth:`ViewItem.load` returns: per source, the referenced messages in ref order
#: (a :class:`ViewItem` for a reference to another view's item).
Loaded = dict[str, list["Message | ViewItem"]]

#: Reads a copy the view holds elsewhere (pins): ``(view, ref) -> StoredMsg | None``.
PinReader = Callable[[str, "Ref"], Awaitable[StoredMsg | None]]


class Carrier(Protocol):
    """What :meth:`ViewItem.of` reads: a :class:`~diaspora.Message`, or a stored message
    with its payload decoded (``diaspora.testing.read_stream``)."""

    @property
    def data(self) -> Any: ...
    @property
    def subject(self) -> str: ...
    @property
    def seq(self) -> int: ...


class Ref(NamedTuple):
    """One reference of a view item: where the message is, and how it got there.

    ``flag`` is ``""`` (the source's own stream), ``"pinned"`` (a copy the view
    holds) or ``"reconstructed"`` (a stand-in the view stored).
    """

    stream: str
    seq: int
    subject: str
    flag: str = ""


@dataclass(frozen=True, slots=True)
class ViewItem:
    """One item of a view: its key, generation, version and references per source.

    Make it from a message of a view input with :meth:`of`; a consumer actor
    takes the view's output like any subject::

        class Trainer(Actor):
            inputs = ("views.ptycho_train",)

            async def handle(self, msg: Message) -> None:
                sample = await ViewItem.of(msg).load(self.fabric)
                patterns = [m.data for m in sample["diff"]]
    """

    view: str
    key: tuple[Any, ...]
    generation: int
    complete: bool
    refs: Mapping[str, tuple[Ref, ...]]
    #: the item's sequence on the view's output stream (0 if not read from it)
    version: int = 0
    #: what :meth:`load` resolved, for an item loaded as part of another view's item
    loaded: Loaded | None = field(default=None, compare=False)

    @classmethod
    def of(cls, msg: Carrier) -> ViewItem:
        """The view item a message of a view's output carries; :class:`DecodeError` if none."""
        data = msg.data
        try:
            refs = {
                str(source): tuple(Ref(str(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in items)
                for source, items in data["refs"].items()
            }
            return cls(
                view=str(data["view"]),
                key=tuple(data["key"]),
                generation=int(data["generation"]),
                complete=bool(data["complete"]),
                refs=refs,
                version=msg.seq,
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise DecodeError(
                f"{msg.subject!r} seq {msg.seq} is not a view item ({exc!r}): take a view's "
                "output subject as the input"
            ) from None

    @property
    def sizes(self) -> dict[str, int]:
        """How many references each source has."""
        return {source: len(refs) for source, refs in self.refs.items()}

    async def load(
        self,
        fabric: Fabric,
        *,
        domain: str | None = None,
        pins: PinReader | None = None,
        _depth: int = 0,
    ) -> Loaded:
        """Every referenced message, decoded, per source in reference order.

        The references of all sources are fetched together with direct gets
        (:func:`~diaspora.fabric.get_many`, one batch per stream). A
        reference its stream no longer has is read from the copies the view
        pinned (``on_stale = "pin"``; ``pins`` reads them elsewhere), else
        raises :class:`~diaspora.errors.Stale`. A referenced message that
        is itself a view item is returned as a :class:`ViewItem`, loaded
        (``item.loaded``).
        """
        by_stream: dict[str, list[int]] = {}
        for refs in self.refs.values():
            for ref in refs:
                by_stream.setdefault(ref.stream, []).append(ref.seq)
        found: dict[tuple[str, int], StoredMsg | None] = {}
        for stream, seqs in by_stream.items():
            got = await get_many(fabric, stream, seqs, domain=domain)
            found.update({(stream, seq): msg for seq, msg in got.items()})
        out: Loaded = {}
        for source, refs in self.refs.items():
            loaded: list[Message | ViewItem] = []
            for ref in refs:
                stored = found[(ref.stream, ref.seq)]
                if stored is None:
                    stored = await (pins or _pin_reader(fabric))(self.view, ref)
                if stored is None:
                    raise Stale(self.view, self.version, ref.stream, ref.seq, source)
                loaded.append(await self._message(fabric, ref, stored, domain, pins, _depth))
            out[source] = loaded
        return out

    async def _message(
        self,
        fabric: Fabric,
        ref: Ref,
        stored: StoredMsg,
        domain: str | None,
        pins: PinReader | None,
        depth: int,
    ) -> Message | ViewItem:
        msg = Message(
            data=codec.decode(stored.payload),
            subject=ref.subject,
            seq=stored.seq,
            headers=stored.headers,
            timestamp=stored.timestamp,
            reconstructed=ref.flag == "reconstructed" or H.RECONSTRUCTED in stored.headers,
            payload=stored.payload,
        )
        if H.VIEW not in stored.headers:
            return msg
        if depth >= MAX_DEPTH:
            raise DecodeError(
                f"view {self.view!r}: views over views nest deeper than {MAX_DEPTH} "
                f"at {ref.stream!r} seq {ref.seq} (a cycle?)"
            )
        inner = ViewItem.of(msg)
        loaded = await inner.load(fabric, domain=domain, pins=pins, _depth=depth + 1)
        return ViewItem(
            inner.view, inner.key, inner.generation, inner.complete, inner.refs, msg.seq, loaded
        )


def _pin_reader(fabric: Fabric) -> PinReader:
    """Reads the copies a view pinned in its KV bucket (``diaspora-view-<name>``)."""

    async def read(view: str, ref: Ref) -> StoredMsg | None:
        copy = await read_pin(fabric, view, ref.stream, ref.seq)
        if copy is None:
            return None
        headers = dict(copy.headers)
        blob = headers.get(H.BLOB)
        payload = await fabric.read_blob(blob) if blob else copy.data
        return StoredMsg(ref.seq, copy.subject, headers, payload, copy.timestamp)

    return read
