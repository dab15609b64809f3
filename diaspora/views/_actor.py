"""The view actor: a supervised actor whose :class:`ViewStage` groups its inputs.

Each input of a view is one of its sources' subjects. ``handle`` gives the
message to the stage, which adds a reference to it to the :class:`Grouper`
(the ``view`` checkpoint section) and publishes every group that completes
as one view item on ``output``. Exactly once across crashes rests on:

- **The grouper is checkpointed with the positions.** A message is added in
  ``handle``, before the runtime advances its position; every snapshot is
  taken between two messages, so a restart re-adds exactly what the
  checkpoint does not hold.
- **A group's message id is its name.** ``view:<name>:<key>:<generation>``,
  not the completing input's id: after a restart another interleaving of the
  sources may complete the same group through another input. The grouper
  puts the same items in the same (key, generation) whatever the
  interleaving, so the re-published item is the same and JetStream's
  de-duplication (or the output scan, after a long outage) drops it.
- **Items that are not in their stream are copied.** An item replayed from
  its producer's history (the stream had lost it) or made by a reconstructor
  has no stream sequence to refer to: the view copies it to its own stream
  ``<output>.copies`` (message id from producer and item number, so a
  restart finds the same copy) and refers to the copy, flagged ``pinned``
  or ``reconstructed``.

A group still open ``within`` seconds after its first item expires and
``on_incomplete`` decides: drop it, emit it partial, or complete it with
stand-ins from the ``reconstruct`` hook. Time is the stored time of the
inputs, of the slowest source while any source has a backlog (its items may
still complete the group), and the clock once the view is idle.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from diaspora import codec
from diaspora._importpath import resolve
from diaspora.actor import Actor, ActorRuntime
from diaspora.actor._emit import required_window
from diaspora.errors import ConfigError
from diaspora.events import GroupCompleted, GroupDropped, GroupOpened
from diaspora.fabric import headers as H
from diaspora.fabric._naming import stream_name
from diaspora.message import Message
from diaspora.stage import Host, Stage
from diaspora.views._groups import Group, Grouper
from diaspora.views._snapshots import liveness_stages
from diaspora.views._spec import OnIncomplete, View

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = [
    "ViewActor",
    "ViewStage",
    "copies_subject",
    "group_msg_id",
    "stage_factory",
    "view_runtime",
]

#: The longest idle wait between two expiry checks.
_MAX_TICK_S: Final = 1.0
_MIN_TICK_S: Final = 0.01

#: A reference as the view item carries it: ``[stream, seq, subject, flag]``.
Ref = list[Any]


def copies_subject(view: View) -> str:
    """The subject of the view's own copies (replayed or reconstructed items)."""
    return f"{view.output}.copies"


def group_msg_id(view: str, key: tuple[Any, ...], generation: int) -> str:
    """The message id of a group's view item: the same whichever input completes it.

    >>> group_msg_id("train", ("s1", 4), 0)
    'view:train:["s1",4]:0'
    """
    return f"view:{view}:{_json_key(key)}:{generation}"


def _json_key(key: tuple[Any, ...]) -> str:
    return json.dumps(list(key), separators=(",", ":"), default=str)


class ViewActor(Actor):
    """Consumes a view's sources; its :class:`ViewStage` does the grouping.

    Run it with :func:`view_runtime` or, in a tree,
    :func:`diaspora.workflow.view_child` (both add the stage).
    """

    checkpoint_interval = 5.0

    def __init__(self, view: View) -> None:
        if not isinstance(view, View):
            raise TypeError(f"ViewActor(view=...) needs a View, got {view!r}")
        self.view = view
        self._stage: ViewStage | None = None

    async def handle(self, msg: Message) -> None:
        stage = self._stage
        if stage is None:
            stage = self._stage = self.stage
        await stage.take(msg)

    @property
    def stage(self) -> ViewStage:
        """The stage running this view (while it runs)."""
        for stage in self._runtime.stages:
            if isinstance(stage, ViewStage):
                return stage
        raise RuntimeError(f"view {self.id!r} runs without its ViewStage")


class ViewStage(Stage):
    """Runs one :class:`View` inside its actor's runtime (see the module)."""

    name = "view"
    section = "view"

    def __init__(self, view: View) -> None:
        self.view = view
        self.grouper = Grouper(view)
        self._by_subject = {s.subject: name for name, s in view.sources.items()}
        self._host: Host | None = None
        self._emit: Callable[..., Any] | None = None
        self._hook: Callable[..., Any] | None = None
        self._copies_ready = False
        self._taken = 0
        #: this start: groups opened / published complete, partial, reconstructed; dropped
        self.opened = self.completed = self.partial = self.reconstructed = self.dropped = 0
        self._reported = (0, 0, 0, 0)
        #: called with each group the view drops (the pin keeper releases its copies)
        self.on_drop: list[Callable[[Group], Awaitable[None]]] = []

    # -- checkpoint section -----------------------------------------------------------

    def snapshot(self) -> Any:
        return {"grouper": self.grouper.snapshot()}

    def restore(self, data: Any, version: int) -> None:
        self.grouper.restore(data["grouper"])

    # -- stage hooks ------------------------------------------------------------------

    async def setup(self, host: Host) -> None:
        self._host = host
        actor = getattr(host, "actor", None)
        if not isinstance(actor, ViewActor):
            raise ConfigError(f"actor {host.id!r}: a ViewStage runs only in a ViewActor")
        self._emit = actor.emit
        if self.view.reconstruct is not None:
            where = f"views.{self.view.name}.reconstruct"
            hook = resolve(self.view.reconstruct, where=where)
            if not callable(hook):
                raise ConfigError(f"{where}: {self.view.reconstruct!r} is not callable")
            self._hook = hook

    def tick(self) -> float | None:
        return min(_MAX_TICK_S, max(_MIN_TICK_S, self.view.within / 4))

    async def take(self, msg: Message) -> None:
        """Add one input message; publish the groups it completes."""
        source = self._by_subject.get(msg.subject)
        if source is None:
            raise ValueError(f"view {self.view.name!r}: {msg.subject!r} is not one of its sources")
        key = self._key_of(msg)
        if key is None:
            return
        fields = msg.data if isinstance(msg.data, Mapping) else {}
        time = msg.timestamp or self.grouper.now
        ref = await self._ref(msg)
        before = self.grouper.opened
        try:
            done = self.grouper.add(source, ref, key, fields, time)
        except ValueError as exc:
            raise ValueError(f"view {self.view.name!r}, source {source!r}: {exc}") from None
        self.opened += self.grouper.opened - before
        self._taken += 1
        for group in done:
            await self._publish(group)
            self.completed += 1

    async def after_batch(self) -> None:
        host = self._host
        assert host is not None
        await self.expire(host)
        await self._report(host)

    async def expire(self, host: Host) -> None:
        """Time groups out, at the time of the slowest source still behind: a group is not
        declared incomplete while a source's backlog may yet hold its items."""
        positions, grouper = host.positions, self.grouper
        behind = [
            name
            for name, s in self.view.sources.items()
            if positions.get(s.subject, 0) < host.input_head(s.subject)
        ]
        if behind:
            now = min(grouper.watermark.get(name, float("-inf")) for name in behind)
        elif self._taken:
            now = grouper.now
        else:
            now = max(grouper.now, host.clock.time())  # idle: time goes on without inputs
        self._taken = 0
        for group in grouper.expire(now):
            await self._settle(host, group)

    # -- what one message and one group become ---------------------------------------

    def _key_of(self, msg: Message) -> tuple[Any, ...] | None:
        data = msg.data if isinstance(msg.data, Mapping) else {}
        if H.VIEW in msg.headers:  # another view's item: its key, in the same order
            inner = data.get("key")
            if isinstance(inner, list) and len(inner) == len(self.view.key):
                return tuple(inner)
        key = []
        for name in self.view.key:
            if name in data:
                key.append(data[name])
            elif name in msg.headers:
                key.append(msg.headers[name])
            else:
                assert self._host is not None
                self._host.log.warning(
                    "view_item_unkeyed", view=self.view.name, subject=msg.subject, seq=msg.seq,
                    field=name,
                )  # fmt: skip
                self._host.stats.skipped += 1
                return None
        return tuple(key)

    async def _ref(self, msg: Message) -> Ref:
        if msg.seq and not msg.replayed and not msg.reconstructed:
            return [stream_name(msg.subject), msg.seq, msg.subject, ""]
        flag = "reconstructed" if msg.reconstructed else "pinned"
        payload = msg.payload or codec.encode(msg.data)
        producer, item = msg.producer, msg.item
        if producer is not None and item is not None:
            name = f"{msg.subject}:{producer}#{item}"
        else:
            name = hashlib.sha256(repr(sorted(msg.headers.items())).encode() + payload).hexdigest()
        seq = await self._copy(payload, dict(msg.headers), f"view:{self.view.name}:copy:{name}")
        return [stream_name(copies_subject(self.view)), seq, msg.subject, flag]

    async def _copy(self, payload: bytes, headers: dict[str, str], msg_id: str) -> int:
        """Store ``payload`` in the view's copies stream; its sequence (the same after a
        restart: a repeated message id is acknowledged with the first copy's sequence)."""
        host = self._host
        assert host is not None
        subject = copies_subject(self.view)
        if not self._copies_ready:
            window = required_window(ViewActor.checkpoint_interval, 60.0)
            await host.fabric.require_stream(subject, min_duplicate_window=window)
            self._copies_ready = True
        headers = {k: v for k, v in headers.items() if k not in (H.MSG_ID, H.BLOB, H.BLOB_SIZE)}
        ack = await host.fabric.publish_bytes(subject, payload, headers=headers, msg_id=msg_id)
        return int(ack.seq)

    async def _publish(self, group: Group, *, complete: bool = True) -> None:
        assert self._emit is not None
        item = {
            "view": self.view.name,
            "key": list(group.key),
            "generation": group.generation,
            "complete": complete,
            "refs": {s: [list(r) for r in refs] for s, refs in group.refs.items()},
        }
        msg_id = group_msg_id(self.view.name, group.key, group.generation)
        await self._emit(self.view.output, item, headers={H.VIEW: self.view.name}, msg_id=msg_id)

    async def _settle(self, host: Host, group: Group) -> None:
        """An expired group: complete after all (a closed window), else ``on_incomplete``."""
        if group.complete:
            await self._publish(group)
            self.completed += 1
            return
        policy = self.view.on_incomplete
        if policy is OnIncomplete.EMIT_PARTIAL:
            if all(group.count(s) >= self.view.min_count(s) for s in self.view.sources):
                await self._publish(group, complete=False)
                self.partial += 1
                return
            await self._drop(host, group, "below min_counts")
        elif policy is OnIncomplete.RECONSTRUCT:
            try:
                await self._stand_in(group)
            except Exception as exc:
                await self._drop(host, group, f"reconstruct hook failed: {exc!r}")
                return
            await self._publish(group)
            self.reconstructed += 1
        else:
            await self._drop(host, group, f"incomplete after within={self.view.within:g}s")

    async def _stand_in(self, group: Group) -> None:
        """Ask the hook for the missing items, copy them, refer to the copies."""
        assert self._hook is not None
        missing = self.missing(group)
        made = self._hook(group.key, missing)
        if inspect.isawaitable(made):
            made = await made
        if not isinstance(made, Mapping):
            raise TypeError(f"the hook returned {made!r}, not {{source: [data, ...]}}")
        stream = stream_name(copies_subject(self.view))
        base = group_msg_id(self.view.name, group.key, group.generation)
        for source, want in missing.items():
            data = list(made.get(source, ()))
            if len(data) != want:
                raise ValueError(f"source {source!r}: {len(data)} stand-ins for {want} missing")
            subject = self.view.sources[source].subject
            for i, value in enumerate(data):
                headers = {H.RECONSTRUCTED: "1"}
                seq = await self._copy(
                    codec.encode(value), headers, f"{base}:stand-in:{source}:{i}"
                )
                group.refs[source].append([stream, seq, subject, "reconstructed"])

    def missing(self, group: Group) -> dict[str, int]:
        """How many items each counted source lacks in ``group`` (known counts only)."""
        out = {}
        for name, source in self.view.sources.items():
            want = source.count if source.count is not None else group.need.get(name)
            if want is not None and group.count(name) < want:
                out[name] = want - group.count(name)
        return out

    async def _drop(self, host: Host, group: Group, reason: str) -> None:
        self.dropped += 1
        for listener in self.on_drop:
            await listener(group)
        counts = {s: group.count(s) for s in self.view.sources}
        await host.event(
            GroupDropped(
                name=host.id,
                view=self.view.name,
                key=_json_key(group.key),
                generation=group.generation,
                counts=counts,
                reason=reason,
            )
        )

    async def _report(self, host: Host) -> None:
        """The batch's opened and completed counts, one event each (none when nothing moved)."""
        opened, completed, partial, rebuilt = self._reported
        open_groups = self.grouper.open_groups
        if self.opened > opened:
            await host.event(
                GroupOpened(
                    name=host.id,
                    view=self.view.name,
                    opened=self.opened - opened,
                    open_groups=open_groups,
                )
            )
        moved = (self.completed - completed, self.partial - partial, self.reconstructed - rebuilt)
        if any(moved):
            await host.event(
                GroupCompleted(
                    name=host.id,
                    view=self.view.name,
                    completed=sum(moved),
                    partial=moved[1],
                    reconstructed=moved[2],
                    open_groups=open_groups,
                )
            )
        self._reported = (self.opened, self.completed, self.partial, self.reconstructed)


def _make_stage(view: View) -> Stage:
    return ViewStage(view)


def stage_factory(view: View) -> functools.partial[Stage]:
    """The runtime stage factory of ``view`` (module-level, so that it pickles)."""
    return functools.partial(_make_stage, view)


def view_runtime(
    view: View, fabric: Fabric, *, id: str | None = None, **kwargs: Any
) -> ActorRuntime:
    """The runtime of one view (id default ``view-<name>``); ``kwargs`` go to
    :class:`~diaspora.actor.ActorRuntime` (``stages`` are added after the view's,
    and after the pin keeper and snapshot stages its settings ask for).

    >>> from diaspora.views import Source, View
    >>> view = View("pairs", output="pairs", key=("id",), within=30.0,
    ...             sources={"a": Source("a"), "b": Source("b")})
    >>> runtime = view_runtime(view, fabric=None)  # type: ignore[arg-type]
    >>> runtime.id, runtime.inputs
    ('view-pairs', ('a', 'b'))
    """
    stages = (stage_factory(view), *liveness_stages(view), *kwargs.pop("stages", ()))
    return ActorRuntime(
        ViewActor,
        fabric,
        id=id or f"view-{view.name}",
        args={"view": view},
        inputs=view.subjects,
        stages=stages,
        **kwargs,
    )
