"""Gap recovery: items a stream lost are replayed from their producer's history, else
reconstructed, else reported lost.

Every item a Diaspora producer emits carries its own number
(``Diaspora-Item``). The stage remembers, per input and producer, the last
number it passed on; a jump is a gap. It asks the producer's history for
the missing items (request/reply, :mod:`diaspora.streams._replay`) and hands
them down the chain, marked replayed, before the item that revealed the
gap. What no history has is declared lost (an event) and, if the input's
QoS spec names a reconstructor, stand-ins marked reconstructed are handed
down instead. Keyless stream gaps (sequences the stream dropped) are lost
and reconstructed the same way.

The stage keeps the ``recovery`` checkpoint section: the last item number
per input and producer, and the last (small) payload per producer, the
left neighbour a reconstructor needs after a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

from diaspora import codec
from diaspora.errors import DecodeError
from diaspora.events import Gap as GapEvent
from diaspora.events import Lost, Reconstructed
from diaspora.fabric import headers as H
from diaspora.message import Message
from diaspora.stage import Host, InputItem, Next, Stage
from diaspora.streams._history import Gap
from diaspora.streams._reconstruct import ReconstructionError, Reconstructor, fill_gap
from diaspora.streams._replay import ReplayError, fetch_history

__all__ = ["GapRecovery", "synthetic_item"]

#: Payloads up to this size are kept in checkpoints as a reconstructor's left neighbour.
TAIL_LIMIT: Final = 64 * 1024


class GapRecovery(Stage):
    """Replays, reconstructs or reports items missing from an input (see the module)."""

    name = "gap_recovery"
    section = "recovery"

    def __init__(self, reconstructors: Mapping[str, Reconstructor] | None = None) -> None:
        self.reconstructors = dict(reconstructors or {})
        #: per input subject, per producer: the last item number passed on
        self.seen: dict[str, dict[str, int]] = {}
        #: per input with a reconstructor, per producer ("" for none): the last payload
        self.tails: dict[str, dict[str, bytes]] = {}
        self._last_data: dict[tuple[str, str | None], Any] = {}
        self._gapped: set[str] = set()
        self._host: Host | None = None

    async def setup(self, host: Host) -> None:
        self._host = host

    def snapshot(self) -> Any:
        return {
            "seen": {s: dict(m) for s, m in self.seen.items()},
            "tails": {s: dict(m) for s, m in self.tails.items()},
        }

    def restore(self, data: Any, version: int) -> None:
        self.seen = {
            str(s): {str(p): int(i) for p, i in m.items()} for s, m in data.get("seen", {}).items()
        }
        self.tails = {
            str(s): {str(p): bytes(b) for p, b in m.items()}
            for s, m in data.get("tails", {}).items()
        }

    @property
    def _partitioned(self) -> bool:
        host = self._host
        return host is not None and host.partition is not None

    async def inbound(self, item: InputItem, next: Next) -> None:
        subject = item.subject
        if item.gap_from is not None:
            self._gapped.add(subject)
        headers = item.headers
        producer, number = headers.get(H.ACTOR), H.item_number(headers)
        if producer is None or number is None:
            if item.gap_from is not None:
                count = item.seq - item.gap_from
                await self._lost(subject, None, item.gap_from, item.seq - 1, count)
                await self._reconstruct(next, item, None, count, item.gap_from)
            await next(item)
            if self.reconstructors:
                self._keep_neighbours(item, None)
            return
        seen = self.seen.setdefault(subject, {})
        last = seen.get(producer)
        if last is None:
            # a producer not seen before: its earlier items are ours to recover only if
            # the stream lost items while this (restored) actor was away
            restored = self._host is not None and self._host.restored
            last = 0 if (restored and subject in self._gapped) else number - 1
        if number > last + 1:
            await self._recover(next, item, producer, last + 1, number - 1)
        if number <= seen.get(producer, last):
            assert self._host is not None
            self._host.stats.skipped += 1  # already handled, replayed from history
        else:
            await next(item)
            if self.reconstructors:
                self._keep_neighbours(item, producer)
        if number > seen.get(producer, 0):
            seen[producer] = number

    def _keep_neighbours(self, item: InputItem, producer: str | None) -> None:
        """Keep the left neighbours of the next gap (only a reconstructor needs them)."""
        message = item.message
        if message is None:
            return
        self._last_data[(item.subject, producer)] = message.data
        if item.handled and not (item.replayed or item.reconstructed):
            if producer is not None:
                self._last_data[(item.subject, None)] = message.data
            if item.subject in self.reconstructors and len(message.payload) <= TAIL_LIMIT:
                self.tails.setdefault(item.subject, {})[producer or ""] = message.payload

    async def _recover(
        self, next: Next, item: InputItem, producer: str, first: int, last: int
    ) -> None:
        """Items ``first..last`` of ``producer`` never reached us: replay, else reconstruct."""
        host = self._host
        assert host is not None
        subject = item.subject
        seen = self.seen.setdefault(subject, {})
        await host.event(
            GapEvent(name=host.id, subject=subject, producer=producer, first=first, last=last)
        )
        missing: list[Gap] = []
        try:
            async with contextlib.aclosing(
                fetch_history(host.fabric, producer, subject, first, last)
            ) as replay:
                async for entry in replay:
                    if isinstance(entry, Gap):
                        missing.append(entry)
                        continue
                    replayed = InputItem(
                        subject=subject,
                        seq=0,
                        headers={**entry.headers, H.ACTOR: producer, H.ITEM: str(entry.item)},
                        payload=entry.payload,
                        source=f"{subject}:{producer}#{entry.item}",
                        replayed=True,
                        origin=item,
                    )
                    await next(replayed)
                    if replayed.message is not None:
                        self._last_data[(subject, producer)] = replayed.message.data
                    seen[producer] = entry.item
                    host.stats.replayed += 1
                    host.progressed()
        except ReplayError as exc:
            host.log.warning("replay_failed", subject=subject, producer=producer, error=str(exc))
            missing = [Gap(subject, seen.get(producer, first - 1) + 1, last)]
        for gap in missing:
            if gap.first > gap.last:
                continue
            await self._lost(subject, producer, gap.first, gap.last, gap.count)
            await self._reconstruct(next, item, producer, gap.count, gap.first)
            seen[producer] = max(seen.get(producer, 0), gap.last)

    async def _lost(
        self, subject: str, producer: str | None, first: int, last: int, count: int
    ) -> None:
        host = self._host
        assert host is not None
        host.stats.lost += count
        by = "item" if producer is not None else "seq"
        await host.event(
            Lost(
                name=host.id,
                subject=subject,
                producer=producer,
                first=first,
                last=last,
                count=count,
                by=by,
            )
        )

    async def _reconstruct(
        self, next: Next, item: InputItem, producer: str | None, count: int, first: int
    ) -> None:
        """Hand reconstructed stand-ins for ``count`` lost items down the chain, if configured.

        Lost items have no key, so no partition of a keyed group can claim them.
        """
        reconstructor = self.reconstructors.get(item.subject)
        if reconstructor is None or count <= 0 or self._partitioned:
            return
        host = self._host
        assert host is not None
        try:
            after = codec.decode(item.payload)
        except DecodeError:
            after = None
        try:
            items = fill_gap(reconstructor, self.before(item.subject, producer), after, count)
        except ReconstructionError as exc:
            host.log.warning("not_reconstructed", subject=item.subject, error=str(exc))
            return
        for offset, data in enumerate(items):
            number = first + offset
            await self.hand_synthetic(
                next,
                item.subject,
                f"{item.subject}:{producer or ''}#{number}",
                data,
                producer,
                number,
            )
        await host.event(
            Reconstructed(
                name=host.id, subject=item.subject, producer=producer, first=first, count=count
            )
        )

    def before(self, subject: str, producer: str | None) -> Any:
        """The last item passed on from ``producer`` (kept in memory, or in the checkpoint)."""
        key = (subject, producer)
        if key in self._last_data:
            return self._last_data[key]
        payload = self.tails.get(subject, {}).get(producer or "")
        if payload is None:
            return None
        try:
            return codec.decode(payload)
        except DecodeError:
            return None

    async def hand_synthetic(
        self,
        next: Next,
        subject: str,
        source: str,
        data: Any,
        producer: str | None,
        number: int,
    ) -> None:
        """Hand one reconstructed item down the chain (marked ``Diaspora-Reconstructed``)."""
        host = self._host
        assert host is not None
        await next(synthetic_item(subject, source, data, producer, number))
        self._last_data[(subject, producer)] = data
        host.stats.reconstructed += 1
        host.progressed()


def synthetic_item(
    subject: str, source: str, data: Any, producer: str | None, number: int
) -> InputItem:
    """A reconstructed stand-in, ready for ``handle`` (``Diaspora-Reconstructed: 1``)."""
    headers = {H.RECONSTRUCTED: "1"}
    if producer is not None:
        headers[H.ACTOR] = producer
        headers[H.ITEM] = str(number)
    return InputItem(
        subject=subject,
        seq=0,
        headers=headers,
        payload=b"",
        source=source,
        reconstructed=True,
        message=Message(data=data, subject=subject, seq=0, headers=headers, reconstructed=True),
    )
