"""Grouping, pure: which items of which sources make one group of a view.

No NATS and no asyncio here: the :class:`Grouper` is fed items one at a
time and says which groups they complete. Its rules, per key:

- Generation ``g`` of a key takes, from each counted source, the next
  ``count`` items of that key in the source's own order (``count_from``:
  as many as the anchor item of generation ``g`` declares); an item of a
  source whose share of ``g`` is full goes to ``g + 1``.
- A windowed source gives a group every item of the key whose time is
  within ``window`` seconds of the group's anchor item; its share closes
  when an item of that source (any key) is later than anchor + window
  (stored times grow along a stream), or when the group expires.
- A group is complete when every share is full and closed; a group open
  for more than ``within`` seconds (by the time of its first item) expires.
  Either way its generation is over for the key: later items start later
  generations.

So the groups emitted depend only on each source's own order, not on how
the sources interleave. ``snapshot()`` is plain data for a checkpoint.

>>> from diaspora.views._spec import Source, View
>>> view = View("v", output="v.out", key=("k",), within=10,
...             sources={"a": Source("a", count=2), "b": Source("b")})
>>> g = Grouper(view)
>>> g.add("a", "a1", ("x",), {}, 1.0), g.add("b", "b1", ("x",), {}, 1.5)
([], [])
>>> [(d.key, d.generation, d.refs) for d in g.add("a", "a2", ("x",), {}, 2.0)]
[(('x',), 0, {'a': ['a1', 'a2'], 'b': ['b1']})]
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diaspora.views._spec import View

__all__ = ["Group", "Grouper", "declared_count"]

Key = tuple[Any, ...]


@dataclass(slots=True)
class Group:
    """One group of a key: its generation, its refs per source, and its progress."""

    key: Key
    generation: int
    #: time of its first item (``within`` counts from here)
    opened: float
    refs: dict[str, list[Any]] = field(default_factory=dict)
    #: per count_from source, the count the anchor item declared
    need: dict[str, int] = field(default_factory=dict)
    #: time of the anchor item (windowed views), once it arrived
    anchor_time: float | None = None
    complete: bool = False

    def count(self, source: str) -> int:
        return len(self.refs.get(source, ()))

    def as_data(self) -> list[Any]:
        return [
            list(self.key),
            self.generation,
            self.opened,
            {s: list(r) for s, r in self.refs.items()},
            dict(self.need),
            self.anchor_time,
        ]

    @classmethod
    def of_data(cls, data: list[Any]) -> Group:
        key, gen, opened, refs, need, anchor_time = data
        return cls(
            _key(key),
            int(gen),
            float(opened),
            {str(s): list(r) for s, r in refs.items()},
            {str(s): int(n) for s, n in need.items()},
            None if anchor_time is None else float(anchor_time),
        )


def declared_count(fields: Mapping[str, Any], field_name: str) -> int:
    """The count a ``count_from`` field declares: an int, or the length of a list.

    >>> declared_count({"positions": [3, 4, 5]}, "positions"), declared_count({"n": 2}, "n")
    (3, 2)
    """
    value = fields.get(field_name) if isinstance(fields, Mapping) else None
    if isinstance(value, bool) or value is None:
        raise ValueError(f"the item has no count field {field_name!r} (an int or a list)")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"count field {field_name!r} is {value}: must be >= 0")
        return value
    if isinstance(value, (list, tuple)):
        return len(value)
    raise ValueError(f"count field {field_name!r} is {value!r}: expected an int or a list")


@dataclass(slots=True)
class _KeyState:
    groups: dict[int, Group] = field(default_factory=dict)
    #: per counted source: the generation its next item goes to
    cursor: dict[str, int] = field(default_factory=dict)
    #: generations below this one are over (completed or expired)
    floor: int = 0
    #: generations above ``floor`` that are over (a later group can complete first)
    closed: set[int] = field(default_factory=set)
    #: per count_from source: items waiting for their generation's declared count
    pending: dict[str, list[list[Any]]] = field(default_factory=dict)
    #: per windowed source: recent items [time, ref], for anchors still to come
    recent: dict[str, list[list[Any]]] = field(default_factory=dict)


class Grouper:
    """Open groups of one view, by key and generation (see the module docstring)."""

    def __init__(self, view: View) -> None:
        self.view = view
        self._within = view.within
        self._anchor = view.anchor
        self._fixed = {n: s.count for n, s in view.sources.items() if s.count is not None}
        #: per count_from source: (the anchor source declaring its count, the field)
        self._declared: dict[str, tuple[str, str]] = {}
        for n, s in view.sources.items():
            if s.count_from is not None:
                declarer, _, name = s.count_from.partition(".")
                self._declared[n] = (declarer, name)
        self._windows = {n: s.window for n, s in view.sources.items() if s.window is not None}
        self._keys: dict[Key, _KeyState] = {}
        #: keys with nothing open: the generation their next group is
        self._floors: dict[Key, int] = {}
        #: per source, the latest stored time seen
        self.watermark: dict[str, float] = {}
        #: the latest time seen on any source (or given to :meth:`expire`)
        self.now = 0.0
        self._opened: list[tuple[float, int, Key, int]] = []
        self._closing: list[tuple[float, int, Key, int]] = []
        self._tie = 0
        #: groups opened since this grouper was made (not checkpointed: a counter for events)
        self.opened = 0

    @property
    def open_groups(self) -> int:
        return sum(len(s.groups) for s in self._keys.values())

    def groups(self) -> list[Group]:
        """The open groups (for inspection and snapshots)."""
        return [g for s in self._keys.values() for g in s.groups.values()]

    # -- feeding -------------------------------------------------------------------------

    def add(
        self, source: str, ref: Any, key: Key, fields: Mapping[str, Any], time: float
    ) -> list[Group]:
        """Add one item of ``source``; return the groups it completed, in completion order.

        ``fields`` are the item's payload fields (read for a ``count_from``
        count when ``source`` is the anchor); ``time`` is its stored time.
        Raises :class:`ValueError` (changing nothing) for an anchor item
        without its declared count.
        """
        if source not in self.view.sources:
            raise ValueError(f"view {self.view.name!r} has no source {source!r}")
        declared = {
            target: declared_count(fields, name)
            for target, (declarer, name) in self._declared.items()
            if declarer == source
        }
        key = _key(key)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _KeyState(floor=self._floors.pop(key, 0))
        if time > self.watermark.get(source, float("-inf")):
            self.watermark[source] = time
        self.now = max(self.now, time)
        done: list[Group] = []
        if source in self._windows:
            self._add_windowed(source, ref, key, state, time)
        else:
            gen = self._place(source, ref, key, state, time, declared)
            if gen is not None:
                self._check(state, gen, done)
            for other in self._declared:
                self._drain(other, key, state, done)
        self._close_windows(done)
        self._prune_recent(state)
        if not state.groups and not state.pending and not state.recent:
            self._forget(key, state)
        return done

    def _place(
        self,
        source: str,
        ref: Any,
        key: Key,
        state: _KeyState,
        time: float,
        declared: Mapping[str, int],
    ) -> int | None:
        if source in self._declared:
            state.pending.setdefault(source, []).append([ref, time])
            return None
        gen = _open_gen(state, state.cursor.get(source, 0))
        group = self._group(key, state, gen, time)
        group.refs.setdefault(source, []).append(ref)
        for target, n in declared.items():
            group.need[target] = n
        if source == self._anchor:
            group.anchor_time = time
            self._gather_window(key, state, group)
        state.cursor[source] = gen + 1 if group.count(source) >= self._fixed[source] else gen
        return gen

    def _drain(self, source: str, key: Key, state: _KeyState, done: list[Group]) -> None:
        """Place waiting items of a count_from source into generations whose count is known."""
        waiting = state.pending.get(source, [])
        while True:
            gen = _open_gen(state, state.cursor.get(source, 0))
            group = state.groups.get(gen)
            need = group.need.get(source) if group is not None else None
            if group is None or need is None:
                break
            if group.count(source) >= need:
                state.cursor[source] = gen + 1
                self._check(state, gen, done)
                continue
            if not waiting:
                break
            ref, _time = waiting.pop(0)
            group.refs.setdefault(source, []).append(ref)
        if not waiting:
            state.pending.pop(source, None)

    def _add_windowed(self, source: str, ref: Any, key: Key, state: _KeyState, time: float) -> None:
        window = self._windows[source]
        assert window is not None
        for group in state.groups.values():
            at = group.anchor_time
            if at is not None and abs(time - at) <= window:
                group.refs.setdefault(source, []).append(ref)
        state.recent.setdefault(source, []).append([time, ref])

    def _gather_window(self, key: Key, state: _KeyState, group: Group) -> None:
        at = group.anchor_time
        assert at is not None
        for source, window in self._windows.items():
            assert window is not None
            group.refs[source] = [
                r for t, r in state.recent.get(source, []) if abs(t - at) <= window
            ]
        if self._windows:
            close = at + max(w for w in self._windows.values() if w is not None)
            self._tie += 1
            heapq.heappush(self._closing, (close, self._tie, key, group.generation))

    def _prune_recent(self, state: _KeyState) -> None:
        """Forget windowed items no later anchor can reach (anchors come in stored-time order)."""
        if not state.recent or self._anchor is None:
            return
        anchor_wm = self.watermark.get(self._anchor)
        if anchor_wm is None:
            return
        for source, items in list(state.recent.items()):
            window = self._windows[source]
            assert window is not None
            kept = [it for it in items if it[0] >= anchor_wm - window]
            if kept:
                state.recent[source] = kept
            else:
                del state.recent[source]

    def _windows_closed(self, group: Group) -> bool:
        if not self._windows:
            return True
        at = group.anchor_time
        if at is None:
            return False
        return all(
            self.watermark.get(s, float("-inf")) > at + w
            for s, w in self._windows.items()
            if w is not None
        )

    def _close_windows(self, done: list[Group]) -> None:
        """Complete the groups whose windows the watermarks have passed, earliest first."""
        while self._closing:
            _close, _tie, key, gen = self._closing[0]
            state = self._keys.get(key)
            group = state.groups.get(gen) if state is not None else None
            if state is None or group is None:
                heapq.heappop(self._closing)
                continue
            if not self._windows_closed(group):
                break  # groups later in the heap have later anchors: not closed either
            heapq.heappop(self._closing)
            self._check(state, gen, done)

    def _group(self, key: Key, state: _KeyState, gen: int, time: float) -> Group:
        group = state.groups.get(gen)
        if group is None:
            group = state.groups[gen] = Group(key, gen, time, {s: [] for s in self.view.sources})
            self.opened += 1
            self._tie += 1
            heapq.heappush(self._opened, (time, self._tie, key, gen))
        return group

    def _full(self, group: Group, *, expired: bool = False) -> bool:
        for source, count in self._fixed.items():
            if group.count(source) < count:
                return False
        for source in self._declared:
            need = group.need.get(source)
            if need is None or group.count(source) < need:
                return False
        return expired or self._windows_closed(group)

    def _check(self, state: _KeyState, gen: int, done: list[Group]) -> None:
        group = state.groups.get(gen)
        if group is None or not self._full(group):
            return
        group.complete = True
        done.append(self._close(state, group))

    def _close(self, state: _KeyState, group: Group, *, older: bool = False) -> Group:
        """End ``group``'s generation for its key (``older``: and every generation before)."""
        gen = group.generation
        del state.groups[gen]
        if older:
            state.floor = max(state.floor, gen + 1)
            state.closed = {g for g in state.closed if g >= state.floor}
        else:
            state.closed.add(gen)
        while state.floor in state.closed:
            state.closed.discard(state.floor)
            state.floor += 1
        return group

    def _forget(self, key: Key, state: _KeyState) -> None:
        """A key with nothing open keeps only its next generation (one number)."""
        if state.closed:
            return
        del self._keys[key]
        if state.floor:
            self._floors[key] = state.floor

    # -- time ----------------------------------------------------------------------------

    def expire(self, now: float | None = None) -> list[Group]:
        """The groups open for more than ``within`` at ``now`` (default: the latest time seen;
        a caller may pass less, the time of its slowest source), oldest first, removed;
        ``complete`` is false (a windowed group whose counts are met and whose window is only
        waiting for time is complete)."""
        at = self.now if now is None else now
        self.now = max(self.now, at)
        limit = at - self._within
        out: list[Group] = []
        while self._opened and self._opened[0][0] < limit:
            _opened, _tie, key, gen = heapq.heappop(self._opened)
            state = self._keys.get(key)
            group = state.groups.get(gen) if state is not None else None
            if state is None or group is None:
                continue
            older = sorted(g for g in state.groups if g < gen)
            for g in older:  # an older generation of the same key ends with it
                out.append(self._expired(state, state.groups[g]))
            out.append(self._expired(state, group))
            if not state.groups and not state.pending and not state.recent:
                self._forget(key, state)
        return out

    def _expired(self, state: _KeyState, group: Group) -> Group:
        # at expiry a window has waited long enough: it closes with what it has
        group.complete = self._full(group, expired=True)
        return self._close(state, group, older=True)

    # -- checkpoint ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers) restoring this grouper exactly."""
        return {
            "now": self.now,
            "watermark": dict(self.watermark),
            "floors": [[list(k), f] for k, f in self._floors.items()],
            "keys": [
                [
                    list(key),
                    [g.as_data() for g in state.groups.values()],
                    dict(state.cursor),
                    state.floor,
                    sorted(state.closed),
                    {s: [list(it) for it in items] for s, items in state.pending.items()},
                    {s: [list(it) for it in items] for s, items in state.recent.items()},
                ]
                for key, state in self._keys.items()
            ],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Set the state from :meth:`snapshot` data."""
        self.now = float(data["now"])
        self.watermark = {str(s): float(t) for s, t in data["watermark"].items()}
        self._keys, self._opened, self._closing = {}, [], []
        self._floors = {_key(k): int(f) for k, f in data.get("floors", [])}
        for key, groups, cursor, floor, closed, pending, recent in data["keys"]:
            state = _KeyState(
                cursor={str(s): int(g) for s, g in cursor.items()},
                floor=int(floor),
                closed={int(g) for g in closed},
                pending={str(s): [list(it) for it in items] for s, items in pending.items()},
                recent={str(s): [list(it) for it in items] for s, items in recent.items()},
            )
            k = _key(key)
            self._keys[k] = state
            for raw in groups:
                group = Group.of_data(raw)
                state.groups[group.generation] = group
                self._tie += 1
                heapq.heappush(self._opened, (group.opened, self._tie, k, group.generation))
                if self._windows and group.anchor_time is not None:
                    close = group.anchor_time + max(w for w in self._windows.values() if w)
                    self._tie += 1
                    heapq.heappush(self._closing, (close, self._tie, k, group.generation))


def _open_gen(state: _KeyState, gen: int) -> int:
    """The first generation from ``gen`` on that is not over."""
    gen = max(gen, state.floor)
    while gen in state.closed:
        gen += 1
    return gen


def _key(value: Any) -> Key:
    """A hashable key: lists (as keys come back from msgpack) become tuples."""
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) if isinstance(v, (list, tuple)) else v for v in value)
    return (value,)
