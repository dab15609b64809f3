"""A migrating producer's history: shipped with its state, written at the destination.

A producer with ``history = HistorySpec(...)`` keeps what it emitted in a
:class:`~diaspora.streams.HistoryBuffer` in its worker's state directory. A
migration ships that history along with the state: the first pre-copy
round every item the buffer holds, each later round (and the final delta
during the pause) the items added since, per subject in item order
(:class:`HistoryShipper`). The standby writes them into its own buffer, in
its state directory (:class:`HistoryCopy`), and closes it at the switch, so
the new owner opens it with the items emitted before the migration and its
:class:`~diaspora.streams.HistoryServer` serves them. The source stops
serving when it steps down (:func:`stop_serving`): one answer per request.

A destination that cannot lock the directory (workers sharing one state
directory on one machine: the source holds it) says so at prepare, and
nothing is shipped: the new owner opens the same directory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from diaspora.actor import ActorRuntime
from diaspora.actor._checkpoint import kv_key
from diaspora.errors import HistoryError
from diaspora.stage import Host
from diaspora.streams._history import HistoryBuffer, HistoryItem, entry_size
from diaspora.streams._stages import HistoryTap

__all__ = ["HistoryCopy", "HistoryShipper", "history_of", "stop_serving"]

#: What an item's fields cost on the wire beyond its payload and headers (a rough bound).
_ITEM_ROOM = 64


def history_of(runtime: ActorRuntime) -> HistoryBuffer | None:
    """The history the running ``runtime`` keeps of its outputs (``None``: it keeps none)."""
    for stage in runtime.stages:
        if isinstance(stage, HistoryTap) and not stage.history.closed:
            return stage.history
    return None


def stop_serving(runtime: ActorRuntime) -> None:
    """Stop answering replay requests for ``runtime`` (it stepped down: the new owner does)."""
    for stage in runtime.stages:
        if isinstance(stage, HistoryTap):
            stage.stop_serving()


class HistoryShipper:
    """The source's side: what of ``buffer`` is not shipped yet, in batches of items.

    One item on the wire is ``[subject, item, headers, payload]``; a batch
    holds at most ``chunk`` bytes (or one larger item).
    """

    def __init__(self, buffer: HistoryBuffer) -> None:
        self.buffer = buffer
        self._shipped: dict[str, int] = {}  # subject -> the newest item shipped
        self.items = 0
        self.bytes = 0

    def total_bytes(self) -> int:
        return self.buffer.stats.bytes

    def pending_bytes(self) -> int:
        """An estimate of what is not shipped yet (items to ship times their mean size)."""
        mean = self.bytes / self.items if self.items else _ITEM_ROOM
        count = 0
        for subject in self.buffer.subjects:
            last = self.buffer.last_item(subject)
            first = self.buffer.first_item(subject)
            if last is None or first is None:
                continue
            count += max(0, last - max(first - 1, self._shipped.get(subject, -1)))
        return int(count * mean)

    def batches(self, chunk: int) -> Iterator[list[list[Any]]]:
        """The items added since the last call (all at the first), marked shipped as yielded."""
        batch: list[list[Any]] = []
        size = 0
        for subject in self.buffer.subjects:
            last = self.buffer.last_item(subject)
            if last is None:
                continue
            first = self._shipped.get(subject, -1) + 1
            if first > last:
                continue
            for found in self.buffer.range(subject, first, last):
                if not isinstance(found, HistoryItem):
                    continue  # evicted meanwhile, or unreadable on disk: not held, not sent
                cost = entry_size(found.payload, found.headers)
                if batch and size + cost + _ITEM_ROOM > chunk:
                    yield batch
                    batch, size = [], 0
                batch.append([subject, found.item, found.headers, found.payload])
                size += cost + _ITEM_ROOM
                self._shipped[subject] = found.item
                self.items += 1
                self.bytes += cost
        if batch:
            yield batch


class HistoryCopy:
    """The standby's side: the actor's history at this worker, open while a migration runs."""

    def __init__(self) -> None:
        self.buffer: HistoryBuffer | None = None
        self.added = 0

    def open(self, host: Host) -> bool:
        """Open this worker's history of ``host``; ``False`` if it keeps none here to fill."""
        self.close()
        if not isinstance(host, ActorRuntime) or host.actor is None:
            return False
        spec = host.actor.history
        if spec is None:
            return False
        default = host.state_dir / "history" / kv_key(host.id)
        try:
            self.buffer = spec.open(default, name=host.id)
        except HistoryError as exc:
            # the source has it open on this machine (one state directory): nothing to copy
            host.log.info(
                "migration_history_shared",
                directory=str(Path(spec.directory) if spec.directory else default),
                reason=str(exc),
            )
            return False
        return True

    def put(self, items: Sequence[Sequence[Any]]) -> None:
        """Write shipped items (items it holds already are ignored: a resent batch)."""
        if self.buffer is None:
            raise HistoryError("history items arrived, but this standby opened no history")
        for subject, item, headers, payload in items:
            if self.buffer.add(str(subject), int(item), payload, dict(headers)):
                self.added += 1

    def close(self) -> None:
        """Write everything out and release the directory (the new owner opens it)."""
        buffer, self.buffer = self.buffer, None
        if buffer is not None:
            buffer.close()
