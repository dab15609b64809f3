"""Snapshots: a view at one version, recoverable without its source streams.

A view's version is the stream sequence of its newest item on its output
(the metastream). A snapshot at version ``v`` holds what the view's
checkpoint holds then (source positions, its open groups) **and a copy of
every source message an open group refers to**, so that a view restored
from it needs none of the sources' early messages: they may have expired.
Snapshots are objects ``v<version>`` of the view's object store
``diaspora-view-<name>``; a retention rule keeps the newest ``keep``.

- :class:`ViewSnapshots` is the stage that writes one every ``every``
  versions (after the view's checkpoint including them is written).
- :func:`view_at` reads what the view held at a version.
- :func:`restore_snapshot` turns a snapshot back into the view actor's
  checkpoint (and the copies into pins), so the view restarts from it:
  it produces the items after ``v`` exactly once (those already on the
  output are found by the output scan and not published again).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from diaspora import codec
from diaspora.actor._checkpoint import CheckpointSlot, Section
from diaspora.errors import DecodeError, ObjectUnreadable, ViewError
from diaspora.events import ViewSnapshot
from diaspora.stage import OutputItem, Stage, StageFactory
from diaspora.views._keeper import Fetch, PinKeeper, fetch_stored, open_refs_of
from diaspora.views._pins import PinnedMessage, Pins, Ref, pin_bucket, pin_key, read_pin
from diaspora.views._spec import OnStale, SnapshotPolicy, View

if TYPE_CHECKING:
    from diaspora.fabric import Fabric
    from diaspora.stage import Host, NextOut

__all__ = [
    "Capture",
    "SnapshotState",
    "ViewSnapshots",
    "liveness_stages",
    "restore_snapshot",
    "snapshot_versions",
    "view_at",
]

_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class Capture:
    """What the view actor hands a snapshot: its checkpoint content and its open groups' refs.

    ``sections`` are checkpoint sections by name (``(version, data)``),
    ``state`` the actor's own ``snapshot()``; ``groups`` the open groups as
    ``(group id, refs)``.
    """

    sections: Mapping[str, tuple[int, Any]]
    groups: Sequence[tuple[str, Sequence[Ref]]]
    state: Any = None


@dataclass(frozen=True, slots=True)
class SnapshotState:
    """A view as a snapshot holds it: see :func:`view_at`."""

    view: str
    version: int
    taken_at: float
    positions: Mapping[str, int]
    sections: Mapping[str, tuple[int, Any]]
    state: Any
    #: open groups: group id -> their refs
    groups: Mapping[str, list[Ref]]
    payloads: Mapping[Ref, PinnedMessage] = field(repr=False)

    def payload(self, stream: str, seq: int) -> PinnedMessage:
        """The copy of ``(stream, seq)`` the snapshot holds (:class:`KeyError` if none)."""
        return self.payloads[(stream, seq)]


def capture_of(host: Host) -> Callable[[], Capture]:
    """What the view running in ``host`` has to snapshot: its stage's section and open groups."""
    stage = getattr(getattr(host, "actor", None), "stage", None)
    groups = open_refs_of(host)
    assert isinstance(stage, Stage)
    section = stage.section
    assert section is not None

    def capture() -> Capture:
        return Capture(
            sections={section: (stage.section_version, stage.snapshot())},
            groups=list(groups()),
        )

    return capture


def _object_name(version: int) -> str:
    return f"v{version:012d}"


async def snapshot_versions(fabric: Fabric, view: str) -> list[int]:
    """Versions of view ``view`` with a snapshot, oldest first."""
    obs = await fabric.ensure_object_store(pin_bucket(view))
    try:
        infos = await obs.list()
    except Exception:  # nats-py raises NotFoundError for an empty bucket
        return []
    return sorted(
        int(i.name[1:])
        for i in infos
        if i.name.startswith("v") and not getattr(i, "deleted", False)
    )


async def write_snapshot(
    fabric: Fabric,
    view: str,
    version: int,
    positions: Mapping[str, int],
    capture: Capture,
    *,
    keep: int,
    fetch: Fetch = fetch_stored,
    actor: str = "",
) -> ViewSnapshot:
    """Store the snapshot of ``view`` at ``version``; prune to the newest ``keep``; its event.

    Every ref of an open group is copied: from its stream, else from the
    view's pins; one neither has raises :class:`ViewError` (the snapshot
    could not be restored without the sources).
    """
    wanted: list[Ref] = sorted({(str(r[0]), int(r[1])) for _, refs in capture.groups for r in refs})
    copies = await fetch(fabric, wanted)
    payloads: dict[str, bytes] = {}
    for ref in wanted:
        copy = copies.get(ref) or await read_pin(fabric, view, *ref)
        if copy is None:
            raise ViewError(
                f"view {view!r}: snapshot at version {version}: {ref[0]} seq {ref[1]} of an open "
                "group is in neither its stream nor the view's pins; use on_stale = 'pin' or a "
                "longer retention on the source"
            )
        payloads[pin_key(*ref)] = copy.encode()
    doc = {
        "format": _FORMAT,
        "view": view,
        "version": version,
        "taken_at": time.time(),
        "positions": dict(positions),
        "sections": {k: [v, d] for k, (v, d) in capture.sections.items()},
        "state": capture.state,
        "groups": {gid: [list(r) for r in refs] for gid, refs in capture.groups},
        "payloads": payloads,
    }
    obs = await fabric.ensure_object_store(pin_bucket(view))
    await obs.put(_object_name(version), codec.encode(doc))
    pruned = 0
    for old in (await snapshot_versions(fabric, view))[:-keep]:
        await obs.delete(_object_name(old))
        pruned += 1
    return ViewSnapshot(
        name=actor or view,
        view=view,
        version=version,
        groups=len(capture.groups),
        payloads=len(payloads),
        bytes=sum(len(p) for p in payloads.values()),
        pruned=pruned,
    )


async def view_at(fabric: Fabric, view: str, version: int | None = None) -> SnapshotState:
    """What view ``view`` held at ``version``: the newest snapshot at or before it.

    ``None`` reads the newest snapshot. The items up to ``state.version`` are
    the output's messages up to that sequence; the open groups, positions and
    copies of their payloads come from the snapshot. Raises
    :class:`ViewError` naming the versions there are when none fits.

    >>> import anyio
    >>> from diaspora.fabric import Fabric
    >>> async def demo() -> None:
    ...     async with Fabric() as fabric:
    ...         await view_at(fabric, "nothing_yet", 5)
    >>> anyio.run(demo)
    Traceback (most recent call last):
    ...
    diaspora.errors.ViewError: view 'nothing_yet' has no snapshot at or before version 5 ...
    """
    versions = await snapshot_versions(fabric, view)
    fits = [v for v in versions if version is None or v <= version]
    if not fits:
        raise ViewError(
            f"view {view!r} has no snapshot at or before version {version} (it has "
            f"{versions or 'none'}): snapshots are written every snapshot.every versions "
            "and pruned to snapshot.keep"
        )
    name = f"{pin_bucket(view)}/{_object_name(fits[-1])}"
    try:
        raw = await fabric.read_object(pin_bucket(view), _object_name(fits[-1]))
        doc = codec.decode(raw)
        payloads = {
            _ref_of(key): PinnedMessage.decode(value, f"{name}:{key}")
            for key, value in doc["payloads"].items()
        }
        return SnapshotState(
            view=view,
            version=int(doc["version"]),
            taken_at=float(doc["taken_at"]),
            positions={str(k): int(v) for k, v in doc["positions"].items()},
            sections={str(k): (int(v[0]), v[1]) for k, v in doc["sections"].items()},
            state=doc["state"],
            groups={
                str(g): [(str(r[0]), int(r[1])) for r in refs] for g, refs in doc["groups"].items()
            },
            payloads=payloads,
        )
    except (ObjectUnreadable, DecodeError, KeyError, TypeError, ValueError) as exc:
        raise ViewError(
            f"snapshot {name} is unreadable ({exc!r}): restore an older version"
        ) from exc


def _ref_of(key: str) -> Ref:
    stream, _, seq = key.rpartition(".")
    return stream, int(seq)


async def restore_snapshot(
    fabric: Fabric, view: str, actor: str, output: str, version: int | None = None
) -> SnapshotState:
    """Make view ``view`` (run as actor ``actor``) restart from its snapshot at ``version``.

    Writes the snapshot's positions and sections as the actor's checkpoint
    (fencing out a running instance), with an ``outputs`` section that makes
    the restarted view scan ``output`` after ``version`` for items it already
    published; and copies every payload of the snapshot into the view's pins,
    so its open groups load without the sources. Start the view afterwards.
    """
    snap = await view_at(fabric, view, version)
    pins = await Pins.open(fabric, view, budget=1 << 62)  # the snapshot's copies all go back
    for gid, refs in snap.groups.items():
        for ref in refs:
            await pins.put(gid, ref, snap.payloads[ref])
    sections = {name: Section(v, data) for name, (v, data) in snap.sections.items()}
    sections["outputs"] = Section(1, {"items": {}, "out_seqs": {output: snap.version}})
    slot = await CheckpointSlot.claim(fabric, actor)
    # snapshot_at 0: the restarted view always scans its output for items after the version
    await slot.save(positions=snap.positions, state=snap.state, sections=sections, snapshot_at=0.0)
    return snap


class ViewSnapshots(Stage):
    """Writes a snapshot of the view every ``every`` items it published (see the module doc)."""

    name = "view_snapshots"

    def __init__(
        self,
        view: View,
        *,
        fetch: Fetch = fetch_stored,
        capture: Callable[[], Capture] | None = None,
    ) -> None:
        policy = view.snapshot or SnapshotPolicy()
        self.view = view.name
        self.output = view.output
        self.every = policy.every
        self.keep = policy.keep
        self._capture = capture
        self._fetch = fetch
        self._since = 0
        self._host: Host | None = None

    async def setup(self, host: Host) -> None:
        self._host = host
        if self._capture is None:
            self._capture = capture_of(host)

    async def outbound(self, out: OutputItem, next: NextOut) -> None:
        await next(out)
        if out.subject == self.output:
            self._since += 1

    async def after_batch(self) -> None:
        if self._since < self.every:
            return
        host = self._host
        assert host is not None
        assert self._capture is not None
        self._since = 0
        await host.checkpoint_now()  # the items so far are acknowledged: the version is known
        version = (await host.fabric.stream_bounds(self.output))[1]
        event = await write_snapshot(
            host.fabric,
            self.view,
            version,
            dict(host.positions),
            self._capture(),
            keep=self.keep,
            fetch=self._fetch,
            actor=host.id,
        )
        await host.event(event)


def liveness_stages(view: View) -> tuple[StageFactory, ...]:
    """The stages ``view``'s settings ask for: the pin keeper (``on_stale = "pin"``) and
    snapshots (``snapshot``), to run after the view's own stage."""
    stages: list[StageFactory] = []
    if view.on_stale is OnStale.PIN:
        stages.append(functools.partial(PinKeeper, view))
    if view.snapshot is not None:
        stages.append(functools.partial(ViewSnapshots, view))
    return tuple(stages)
