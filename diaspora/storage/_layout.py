"""Chunk layouts (``rep:n``, ``rs:k+m``), their placement over sites, and the manifest.

A manifest is one JSON value per object in the bucket's KV, written with a
compare-and-set on its revision: it names the object's size and SHA-256,
and for every chunk its size, SHA-256, layout, codec and fragments (index,
site, key, length, SHA-256). Fragment keys carry a generation fresh at each
(re)write of a chunk, so a new layout is written beside the old one, the
manifest switched in one CAS, and only then the old one collected: a reader
holding either manifest finds a complete layout.

>>> Layout.parse("rs:4+2"), Layout.parse("rep:3").fragments
(Layout(kind='rs', k=4, m=2), 3)
>>> place(Layout.parse("rs:4+2"), ["a", "b", "c"], lose=1)
['a', 'b', 'c', 'a', 'b', 'c']
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from diaspora.errors import ConfigError, PlacementError, StorageError

if TYPE_CHECKING:
    from diaspora.storage._manifests import Current

__all__ = ["ChunkInfo", "Fragment", "Layout", "Manifest", "place", "tolerated"]

_LAYOUT: Final = re.compile(r"^(?:rep:(\d+)|rs:(\d+)\+(\d+))$")


@dataclass(frozen=True, slots=True)
class Layout:
    """How a chunk is kept: ``rep:n`` (``n`` whole copies) or ``rs:k+m`` (any ``k`` of ``k+m``)."""

    kind: Literal["rep", "rs"]
    k: int
    m: int

    @classmethod
    def parse(cls, text: str) -> Layout:
        """``"rep:2"`` or ``"rs:4+2"``; :class:`ConfigError` naming the text otherwise."""
        match = _LAYOUT.match(text.strip())
        if match is None:
            raise ConfigError(f"layout {text!r}: write rep:<copies> or rs:<k>+<m> (e.g. rs:4+2)")
        if match.group(1) is not None:
            n = int(match.group(1))
            if n < 1:
                raise ConfigError(f"layout {text!r}: at least one copy")
            return cls("rep", 1, n - 1)
        k, m = int(match.group(2)), int(match.group(3))
        if k < 1 or m < 0 or k + m > 255:
            raise ConfigError(f"layout {text!r}: need k >= 1, m >= 0, k + m <= 255")
        return cls("rs", k, m)

    def __str__(self) -> str:
        return f"rep:{self.k + self.m}" if self.kind == "rep" else f"rs:{self.k}+{self.m}"

    @property
    def fragments(self) -> int:
        """How many fragments (copies, for ``rep``) a chunk has."""
        return self.k + self.m

    @property
    def overhead(self) -> float:
        """Bytes stored per byte of data."""
        return self.fragments / self.k


def tolerated(sites: Sequence[str], layout: Layout) -> int:
    """How many sites may be lost, whichever they are, with ``layout`` placed on ``sites``."""
    counts = sorted(Counter(sites).values(), reverse=True)
    lost, worst = 0, 0
    for count in counts:
        worst += count
        if worst > layout.m:
            break
        lost += 1
    return lost


def place(layout: Layout, sites: Sequence[str], *, lose: int, start: int = 0) -> list[str]:
    """The site of each fragment of a chunk: round robin over ``sites`` from ``start``.

    Raises :class:`PlacementError` when ``sites`` are too few for the
    loss of ``lose`` of them to leave ``k`` fragments.
    """
    if not sites:
        raise PlacementError(f"layout {layout}: no site answers to hold its fragments")
    order = list(sites[start % len(sites) :]) + list(sites[: start % len(sites)])
    chosen = [order[j % len(order)] for j in range(layout.fragments)]
    if tolerated(chosen, layout) < lose:
        raise PlacementError(
            f"layout {layout} over sites {', '.join(sites)}: losing {lose} of them could leave "
            f"fewer than {layout.k} fragments; bring more sites up, or lower sites that may be "
            "lost, or use a layout with more parity"
        )
    return chosen


@dataclass(frozen=True, slots=True)
class Fragment:
    """One stored fragment (or copy) of a chunk."""

    index: int
    site: str
    key: str
    length: int
    sha256: str

    def as_json(self) -> list[Any]:
        return [self.index, self.site, self.key, self.length, self.sha256]


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """One chunk of an object: where its fragments are and how to check them."""

    index: int
    size: int
    sha256: str
    layout: Layout
    codec: str
    fragments: tuple[Fragment, ...]

    @property
    def stored(self) -> int:
        """Bytes this chunk takes over all sites."""
        return sum(f.length for f in self.fragments)

    def as_json(self) -> dict[str, Any]:
        return {
            "i": self.index,
            "size": self.size,
            "sha": self.sha256,
            "layout": str(self.layout),
            "codec": self.codec,
            "frags": [f.as_json() for f in self.fragments],
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    """Where every chunk of one object is; ``revision`` is its sequence number (one more at
    each write of its manifest)."""

    name: str
    size: int
    sha256: str
    chunk_size: int
    write: str
    chunks: tuple[ChunkInfo, ...]
    created: float
    revision: int = field(default=0, compare=False)
    #: what the manifest sites held when it was read (the base of a compare-and-set over it)
    current: Current | None = field(default=None, compare=False, repr=False)

    @property
    def stored(self) -> int:
        """Bytes the object takes over all sites (its fragments)."""
        return sum(c.stored for c in self.chunks)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "name": self.name,
                "size": self.size,
                "sha": self.sha256,
                "chunk": self.chunk_size,
                "write": self.write,
                "created": self.created,
                "chunks": [c.as_json() for c in self.chunks],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes, revision: int, where: str) -> Manifest:
        try:
            raw = json.loads(data)
            chunks = tuple(
                ChunkInfo(
                    c["i"],
                    c["size"],
                    c["sha"],
                    Layout.parse(c["layout"]),
                    c["codec"],
                    tuple(Fragment(*f) for f in c["frags"]),
                )
                for c in raw["chunks"]
            )
            return cls(
                raw["name"],
                raw["size"],
                raw["sha"],
                raw["chunk"],
                raw["write"],
                chunks,
                raw["created"],
                revision,
            )
        except (ValueError, KeyError, TypeError, ConfigError) as exc:
            raise StorageError(f"{where}: the manifest is unreadable ({exc!r})") from exc
