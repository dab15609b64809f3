"""The view spec: :class:`View` and its :class:`Source` values, with the one checker.

A Python user and a workflow file's ``[views.<name>]`` table build the same
objects; :func:`view_from_table` is the file's way in and both end in
:meth:`View.check`, whose errors name the field
(``views.ptycho_train.sources.diff.count``), after the file when there is one.

>>> view = View(
...     "ptycho_train",
...     output="views.ptycho_train",
...     key=("scan", "tile"),
...     within=60.0,
...     sources={"diff": Source("ptycho.diff", count=16), "recon": Source("ptycho.recon")},
... )
>>> view.subjects, view.on_incomplete
(('ptycho.diff', 'ptycho.recon'), <OnIncomplete.DROP: 'drop'>)
>>> View("v", output="v.out", key=("k",), within=0, sources={"a": Source("a")})
Traceback (most recent call last):
...
diaspora.errors.ConfigError: views.v.within: 0 must be > 0 seconds (the longest an open group waits)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from diaspora.errors import ConfigError
from diaspora.fabric._naming import check_input, check_subject
from diaspora.storage import StorageSpec

if TYPE_CHECKING:
    from diaspora.fabric import Fabric
    from diaspora.views._snapshots import SnapshotState

__all__ = [
    "OnIncomplete",
    "OnStale",
    "SnapshotPolicy",
    "Source",
    "View",
    "parse_size",
    "view_from_table",
]

_NAME: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_UNITS: Final = {
    **{"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40},
    **{"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12},
}
_SIZE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_VIEW_KEYS: Final = frozenset(
    {
        "output",
        "key",
        "within",
        "sources",
        "on_incomplete",
        "min_counts",
        "reconstruct",
        "on_stale",
        "pin_budget",
        "pin_margin",
        "pin_storage",
        "snapshot",
    }
)
#: keys a workflow file's view table may have besides the spec (where the view runs)
PLACEMENT_KEYS: Final = frozenset({"site", "process"})
_SOURCE_KEYS: Final = frozenset({"subject", "count", "count_from", "window"})
_SNAPSHOT_KEYS: Final = frozenset({"every", "keep"})


class OnIncomplete(enum.Enum):
    """What a view does with a group still incomplete after ``within`` seconds."""

    #: forget it (a :class:`~diaspora.events.GroupDropped` event says so)
    DROP = "drop"
    #: emit it with ``complete = false`` if every source has its ``min_counts``, else drop
    EMIT_PARTIAL = "emit_partial"
    #: call the ``reconstruct`` hook for stand-ins of the missing items, then emit
    RECONSTRUCT = "reconstruct"


class OnStale(enum.Enum):
    """What a view does about references its sources' retention is about to drop."""

    #: nothing: loading such an item raises :class:`~diaspora.errors.Stale`
    DISCARD = "discard"
    #: copy what is about to expire into the view's own store, within ``pin_budget``
    PIN = "pin"


def parse_size(value: object, where: str) -> int:
    """Bytes from an int or a string such as ``"2GiB"`` / ``"500 MB"``.

    >>> parse_size("2GiB", "pin_budget"), parse_size(1024, "pin_budget")
    (2147483648, 1024)
    """
    if isinstance(value, bool):
        raise ConfigError(f"{where}: {value!r} is not a size (bytes, or a string like '2GiB')")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)) and m[2].lower() in _UNITS:
        size = int(float(m[1]) * _UNITS[m[2].lower()])
    else:
        raise ConfigError(
            f"{where}: {value!r} is not a size (bytes, or a number with KiB, MiB, GiB, KB, MB, GB)"
        )
    if size <= 0:
        raise ConfigError(f"{where}: {value!r} must be a positive size")
    return size


@dataclass(frozen=True, slots=True)
class Source:
    """One input of a view: a subject and how many of its items a group takes.

    ``count`` items per group (default 1), or ``count_from="<source>.<field>"``:
    as many as that field of the other source's item says (an int, or a list:
    its length), or ``window=t``: every item within ``t`` seconds (stored
    time) of the group's anchor item (the view's one ``count = 1`` source).

    >>> Source("ptycho.diff", count=16).count, Source("ptycho.diff", window=0.5).count
    (16, None)
    """

    subject: str
    count: int | None = None
    count_from: str | None = None
    window: float | None = None

    def __post_init__(self) -> None:
        if self.count is None and self.count_from is None and self.window is None:
            object.__setattr__(self, "count", 1)

    @property
    def counted(self) -> bool:
        """Whether the source fills groups by count (``count`` or ``count_from``)."""
        return self.window is None


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """When a view snapshots itself (every ``every`` versions) and how many it keeps."""

    every: int = 1000
    keep: int = 10


@dataclass(frozen=True, slots=True)
class View:
    """A join of several sources into groups by key, published as items of references.

    The group of a key takes, from each source, the first ``count`` items
    of that key (in the source's stream order); once every source has its
    count the group is emitted once, as a view item on ``output``, and the
    key's next items start its next generation. ``within`` (seconds,
    required) bounds how long a group may stay open; then ``on_incomplete``
    decides. ``key`` names fields of the payload (a map), else headers. See
    ``docs/views.md``.
    """

    name: str
    output: str
    key: tuple[str, ...]
    within: float
    sources: Mapping[str, Source]
    on_incomplete: OnIncomplete | str = OnIncomplete.DROP
    #: per source, the fewest items a partial group needs to be emitted (emit_partial)
    min_counts: Mapping[str, int] = field(default_factory=dict)
    #: import path of the stand-in maker (reconstruct): ``hook(key, missing) -> {source: [data]}``
    reconstruct: str | None = None
    on_stale: OnStale | str = OnStale.DISCARD
    pin_budget: int | str = 1 << 30
    #: pin refs whose sequence is within this many of their stream's first sequence
    pin_margin: int = 200
    snapshot: SnapshotPolicy | None = None
    #: keep pinned copies in resilient storage (chunks over sites) instead of one site's KV
    pin_storage: StorageSpec | None = None
    #: where the spec was declared (a file), for error messages
    where: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        self.check()

    @property
    def subjects(self) -> tuple[str, ...]:
        """The subjects of the sources, in declaration order (the view actor's inputs)."""
        return tuple(s.subject for s in self.sources.values())

    @property
    def anchor(self) -> str | None:
        """The source that windows and ``count_from`` refer to (``count = 1``), if any."""
        ones = [n for n, s in self.sources.items() if s.count == 1 and s.window is None]
        return ones[0] if len(ones) == 1 else None

    def check(self) -> None:
        """Validate and normalize every field; :class:`ConfigError` naming the field."""
        at = f"{self.where}: views.{self.name}" if self.where else f"views.{self.name}"
        put = object.__setattr__
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"{at}: view name {self.name!r}: use letters, digits, _ and -")
        put(self, "output", check_subject(_str(self.output, f"{at}.output"), where=f"{at}.output"))
        keys = (self.key,) if isinstance(self.key, str) else self.key
        if not isinstance(keys, (tuple, list)) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(f"{at}.key: {self.key!r} is not a list of field names")
        put(self, "key", tuple(keys))
        within = self.within
        if isinstance(within, bool) or not isinstance(within, (int, float)) or not within > 0:
            raise ConfigError(
                f"{at}.within: {within!r} must be > 0 seconds (the longest an open group waits)"
            )
        put(self, "within", float(within))
        self._check_sources(at)
        put(self, "on_incomplete", _member(OnIncomplete, self.on_incomplete, f"{at}.on_incomplete"))
        put(self, "on_stale", _member(OnStale, self.on_stale, f"{at}.on_stale"))
        self._check_incomplete(at)
        put(self, "pin_budget", parse_size(self.pin_budget, f"{at}.pin_budget"))
        if isinstance(self.pin_margin, bool) or not isinstance(self.pin_margin, int):
            raise ConfigError(f"{at}.pin_margin: {self.pin_margin!r} is not an integer")
        if self.pin_margin < 0:
            raise ConfigError(f"{at}.pin_margin: {self.pin_margin} must be >= 0")
        if self.pin_storage is not None and not isinstance(self.pin_storage, StorageSpec):
            raise ConfigError(f"{at}.pin_storage: {self.pin_storage!r} is not a StorageSpec")
        snap = self.snapshot
        if snap is not None:
            if not isinstance(snap, SnapshotPolicy):
                raise ConfigError(f"{at}.snapshot: {snap!r} is not a SnapshotPolicy")
            for name in ("every", "keep"):
                value = getattr(snap, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(f"{at}.snapshot.{name}: {value!r} must be an integer >= 1")

    def _check_sources(self, at: str) -> None:
        sources = self.sources
        if not isinstance(sources, Mapping) or not sources:
            raise ConfigError(f"{at}.sources: a view needs at least one source table")
        checked: dict[str, Source] = {}
        subjects: dict[str, str] = {}
        for name, source in sources.items():
            where = f"{at}.sources.{name}"
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigError(f"{where}: source name {name!r}: use letters, digits, _ and -")
            if not isinstance(source, Source):
                raise ConfigError(f"{where}: {source!r} is not a Source")
            subject = check_input(
                _str(source.subject, f"{where}.subject"), where=f"{where}.subject"
            )
            if subject in subjects:
                raise ConfigError(
                    f"{where}.subject: {subject!r} is also source {subjects[subject]!r}: "
                    "each source of a view reads its own subject"
                )
            subjects[subject] = name
            given = [k for k in ("count", "count_from", "window") if getattr(source, k) is not None]
            if len(given) > 1:
                raise ConfigError(f"{where}: give one of count, count_from, window (not {given})")
            if source.count is not None and (
                isinstance(source.count, bool) or not isinstance(source.count, int)
            ):
                raise ConfigError(f"{where}.count: {source.count!r} is not an integer")
            if source.count is not None and source.count < 1:
                raise ConfigError(f"{where}.count: {source.count} must be >= 1")
            if source.window is not None:
                w = source.window
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
                    raise ConfigError(f"{where}.window: {w!r} must be > 0 seconds")
                if w >= self.within:
                    raise ConfigError(
                        f"{where}.window: {w}s must be shorter than within ({self.within}s): "
                        "a group waits at most within seconds for its window to close"
                    )
            checked[name] = Source(subject, source.count, source.count_from, source.window)
        object.__setattr__(self, "sources", checked)
        anchor = self.anchor
        for name, source in checked.items():
            where = f"{at}.sources.{name}"
            if source.window is not None and anchor is None:
                raise ConfigError(
                    f"{where}.window: a windowed source needs exactly one other source with "
                    "count = 1 (the anchor whose item's time the window is around)"
                )
            if source.count_from is not None:
                other, dot, fieldname = source.count_from.partition(".")
                if not dot or not fieldname or other not in checked or other == name:
                    raise ConfigError(
                        f"{where}.count_from: {source.count_from!r} is not '<source>.<field>' "
                        f"of another source of the view ({', '.join(sorted(checked))})"
                    )
                if checked[other].count != 1:
                    raise ConfigError(
                        f"{where}.count_from: source {other!r} must have count = 1 "
                        "(one item declares the count of one group)"
                    )
        if not any(s.counted for s in checked.values()):
            raise ConfigError(f"{at}.sources: at least one source must fill groups by count")

    def _check_incomplete(self, at: str) -> None:
        mins = dict(self.min_counts)
        for name, n in mins.items():
            where = f"{at}.min_counts.{name}"
            if name not in self.sources:
                raise ConfigError(f"{where}: no source {name!r} in the view")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ConfigError(f"{where}: {n!r} must be an integer >= 0")
        if mins and self.on_incomplete is not OnIncomplete.EMIT_PARTIAL:
            raise ConfigError(f"{at}.min_counts: only used with on_incomplete = 'emit_partial'")
        object.__setattr__(self, "min_counts", mins)
        if self.on_incomplete is OnIncomplete.RECONSTRUCT:
            if not isinstance(self.reconstruct, str) or not self.reconstruct.strip():
                raise ConfigError(
                    f"{at}.reconstruct: on_incomplete = 'reconstruct' needs the import path of "
                    "a hook ('package.module:make_stand_ins')"
                )
        elif self.reconstruct is not None:
            raise ConfigError(f"{at}.reconstruct: only used with on_incomplete = 'reconstruct'")

    def min_count(self, source: str) -> int:
        """The fewest items of ``source`` a partial group needs (default 1)."""
        return self.min_counts.get(source, 1)

    async def at(self, fabric: Fabric, version: int | None = None) -> SnapshotState:
        """What this view held at ``version`` (``None``: its newest snapshot).

        The same as :func:`~diaspora.views.view_at` with the view's name.
        """
        from diaspora.views._snapshots import view_at

        return await view_at(fabric, self.name, version)


def view_from_table(name: str, table: Mapping[str, Any], *, where: str = "") -> View:
    """The :class:`View` a workflow file's ``[views.<name>]`` table declares.

    ``where`` is the file; errors name it and the field. Placement keys
    (``site``, ``process``) are the workflow's, not the spec's: they are
    accepted and ignored here.

    >>> table = {"output": "v.out", "key": ["k"], "within": 5,
    ...          "sources": {"a": {"subject": "a", "count": 2}, "b": {"subject": "b"}}}
    >>> view_from_table("v", table).sources["a"].count
    2
    >>> view_from_table("v", {**table, "within": None}, where="flow.toml")
    Traceback (most recent call last):
    ...
    diaspora.errors.ConfigError: flow.toml: views.v.within: None must be > 0 seconds ...
    """
    at = f"{where}: views.{name}" if where else f"views.{name}"
    if not isinstance(table, Mapping):
        raise ConfigError(f"{at}: {table!r} is not a table")
    _keys(table, at, _VIEW_KEYS | PLACEMENT_KEYS)
    for required in ("output", "key", "within", "sources"):
        if required not in table:
            raise ConfigError(
                f"{at}.{required}: missing (a view needs output, key, within, sources)"
            )
    raw_sources = table["sources"]
    if not isinstance(raw_sources, Mapping):
        raise ConfigError(f"{at}.sources: expected [views.{name}.sources.<source>] tables")
    sources = {}
    for src, raw in raw_sources.items():
        s_at = f"{at}.sources.{src}"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{s_at}: {raw!r} is not a table")
        _keys(raw, s_at, _SOURCE_KEYS)
        if "subject" not in raw:
            raise ConfigError(f"{s_at}.subject: missing (the subject the source reads)")
        sources[src] = Source(
            raw["subject"], raw.get("count"), raw.get("count_from"), raw.get("window")
        )
    snapshot = None
    if "snapshot" in table:
        raw_snap = table["snapshot"]
        if not isinstance(raw_snap, Mapping):
            raise ConfigError(f"{at}.snapshot: expected a table (every, keep)")
        _keys(raw_snap, f"{at}.snapshot", _SNAPSHOT_KEYS)
        snapshot = SnapshotPolicy(**raw_snap)
    key = table["key"]
    return View(
        name,
        output=table["output"],
        key=tuple(key) if isinstance(key, list) else key,
        within=table["within"],
        sources=sources,
        on_incomplete=table.get("on_incomplete", OnIncomplete.DROP),
        min_counts=_mapping(table.get("min_counts", {}), f"{at}.min_counts"),
        reconstruct=table.get("reconstruct"),
        on_stale=table.get("on_stale", OnStale.DISCARD),
        pin_budget=table.get("pin_budget", 1 << 30),
        pin_margin=table.get("pin_margin", 200),
        pin_storage=StorageSpec.from_table(table["pin_storage"], f"{at}.pin_storage")
        if "pin_storage" in table
        else None,
        snapshot=snapshot,
        where=where,
    )


def _keys(table: Mapping[str, Any], at: str, allowed: frozenset[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{at}.{unknown[0]}: unknown key (expected one of {', '.join(sorted(allowed))})"
        )


def _mapping(value: object, at: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{at}: {value!r} is not a table")
    return dict(value)


def _str(value: object, at: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{at}: {value!r} is not a string")
    return value


def _member(cls: type[enum.Enum], value: object, at: str) -> Any:
    for member in cls:
        if value is member or value == member.value:
            return member
    names = ", ".join(repr(m.value) for m in cls)
    raise ConfigError(f"{at}: {value!r} is not one of {names}")
