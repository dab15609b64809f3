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
and reconstructed the same way. Numbers the producer left out on purpose
(``Actor.leave_out``: the item after them says how many, ``Diaspora-Thinned``)
are not asked for and not lost: a ``Thinned`` event, and stand-ins if the
input has a reconstructor.

When the history cannot be asked at all (the producer's site is cut off, or
the producer is away: a request fails at once with no responders, or gets
no answer within its timeout), the range is settled by stand-ins if the
input has a reconstructor; otherwise it is reported ``Lost`` with
``pending`` set, kept, and asked for again every few seconds (from 1 s,
doubling to 30 s while nobody answers). What the history then still has is
handed to ``handle`` late (after newer items, marked replayed) with a
``Replayed`` event (``late``); what it no longer has is a final ``Lost``.

Items of a partitioned subject's partition are numbered per partition
(``Diaspora-Partition``): the stage keeps and asks for them under the
partition's subject.

The stage keeps the ``recovery`` checkpoint section: the last item number
per input and producer, the last (small) payload per producer (the left
neighbour a reconstructor needs after a restart), and the pending ranges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

from diaspora import codec
from diaspora.errors import DecodeError
from diaspora.events import Gap as GapEvent
from diaspora.events import Lost, Reconstructed, Replayed, Thinned
from diaspora.fabric import headers as H
from diaspora.fabric._naming import partition_base, partition_subject
from diaspora.message import Message
from diaspora.stage import Host, InputItem, Next, Stage
from diaspora.streams._history import Gap, HistoryItem
from diaspora.streams._reconstruct import ReconstructionError, Reconstructor, fill_gap
from diaspora.streams._replay import ReplayError, ReplayUnavailable, fetch_history

__all__ = ["GapRecovery", "synthetic_item"]


def _numbered_on(item: InputItem) -> str:
    """The subject the producer numbered ``item`` on: its partition's, if it has one."""
    k = item.headers.get(H.PARTITION)
    return item.subject if k is None or not k.isdigit() else partition_subject(item.subject, int(k))


def _number(headers: Mapping[str, str]) -> int | None:
    """The producer's number of an item on the subject of :func:`_numbered_on`."""
    if H.PARTITION in headers:
        value = headers.get(H.PARTITION_ITEM)
        return int(value) if value is not None and value.isdigit() else None
    return H.item_number(headers)


#: Payloads up to this size are kept in checkpoints as a reconstructor's left neighbour.
TAIL_LIMIT: Final = 64 * 1024
#: Seconds before a pending range is asked for again, doubling while nobody answers.
RETRY_FIRST: Final = 1.0
RETRY_MAX: Final = 30.0
#: Seconds a retry waits for an answer (a cut link fails at once; a black hole waits this).
RETRY_TIMEOUT: Final = 2.0


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
        #: per input, per producer: item ranges reported lost while its history was unreachable
        self.pending: dict[str, dict[str, list[list[int]]]] = {}
        self._retry_at = 0.0
        self._retry_wait = RETRY_FIRST
        self._host: Host | None = None

    async def setup(self, host: Host) -> None:
        self._host = host

    def snapshot(self) -> Any:
        return {
            "seen": {s: dict(m) for s, m in self.seen.items()},
            "tails": {s: dict(m) for s, m in self.tails.items()},
            "pending": {
                s: {p: [list(r) for r in rs] for p, rs in m.items()}
                for s, m in self.pending.items()
            },
        }

    def restore(self, data: Any, version: int) -> None:
        self.seen = {
            str(s): {str(p): int(i) for p, i in m.items()} for s, m in data.get("seen", {}).items()
        }
        self.tails = {
            str(s): {str(p): bytes(b) for p, b in m.items()}
            for s, m in data.get("tails", {}).items()
        }
        self.pending = {
            str(s): {str(p): [[int(a), int(b)] for a, b in rs] for p, rs in m.items()}
            for s, m in data.get("pending", {}).items()
        }

    @property
    def _partitioned(self) -> bool:
        host = self._host
        return host is not None and host.partition is not None

    async def inbound(self, item: InputItem, next: Next) -> None:
        if item.replayed:  # a late replay this stage submitted (see after_batch)
            await next(item)
            return
        headers = item.headers
        if H.PARTITION in headers:  # numbered on its partition's subject
            subject, number = _numbered_on(item), _number(headers)
        else:
            subject, number = item.subject, H.item_number(headers)
        if item.gap_from is not None:
            self._gapped.add(subject)
        producer = headers.get(H.ACTOR)
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
            # the numbers right before this one its producer left out on purpose are not
            # asked for (nobody has them): stand-ins if configured, and a thinned event
            left_out = 0 if H.PARTITION in headers else min(H.thinned(headers), number - last - 1)
            if number - left_out > last + 1:
                await self._recover(next, item, producer, last + 1, number - 1 - left_out)
            if left_out:
                await self._thinned(next, item, producer, number - left_out, left_out)
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
        subject = _numbered_on(item)
        seen = self.seen.setdefault(subject, {})
        await host.event(
            GapEvent(name=host.id, subject=subject, producer=producer, first=first, last=last)
        )
        missing: list[Gap] = []
        filled: list[list[int]] = []
        unreached: Gap | None = None
        try:
            async with contextlib.aclosing(
                fetch_history(host.fabric, producer, subject, first, last)
            ) as replay:
                async for entry in replay:
                    if isinstance(entry, Gap):
                        missing.append(entry)
                        continue
                    await self._hand_replayed(next, subject, producer, entry, item)
                    seen[producer] = entry.item
                    _add_run(filled, entry.item)
        except ReplayError as exc:
            rest = Gap(subject, seen.get(producer, first - 1) + 1, last)
            host.log.warning("replay_failed", subject=subject, producer=producer, error=str(exc))
            missing = [g for g in missing if g.last < rest.first]
            if isinstance(exc, ReplayUnavailable) and not self._reconstructs(subject):
                unreached = rest
            else:
                missing.append(rest)
        await self._report_replayed(subject, producer, filled, late=False)
        for gap in missing:
            if gap.first > gap.last:
                continue
            await self._lost(subject, producer, gap.first, gap.last, gap.count)
            await self._reconstruct(next, item, producer, gap.count, gap.first)
            seen[producer] = max(seen.get(producer, 0), gap.last)
        if unreached is not None and unreached.first <= unreached.last:
            await self._lost(
                subject, producer, unreached.first, unreached.last, unreached.count, pending=True
            )
            runs = self.pending.setdefault(subject, {}).setdefault(producer, [])
            runs.append([unreached.first, unreached.last])
            seen[producer] = max(seen.get(producer, 0), unreached.last)
            self._retry_at = host.clock.monotonic() + self._retry_wait

    async def _thinned(
        self, next: Next, item: InputItem, producer: str, first: int, count: int
    ) -> None:
        """Items ``first..first+count-1`` were left out by ``producer`` (``Actor.leave_out``)."""
        host = self._host
        assert host is not None
        made = await self._reconstruct(next, item, producer, count, first)
        self.seen.setdefault(item.subject, {})[producer] = first + count - 1
        await host.event(
            Thinned(
                name=host.id,
                subject=item.subject,
                producer=producer,
                first=first,
                last=first + count - 1,
                count=count,
                reconstructed=made,
            )
        )

    def _reconstructs(self, subject: str) -> bool:
        """Whether a gap in ``subject`` is settled by stand-ins (so never replayed late)."""
        return subject in self.reconstructors and not self._partitioned

    async def _hand_replayed(
        self,
        next: Next,
        subject: str,
        producer: str,
        entry: HistoryItem,
        origin: InputItem | None,
    ) -> None:
        host = self._host
        assert host is not None
        split = partition_base(subject)
        replayed = InputItem(
            subject=subject if split is None else split[0],  # the input, not its partition
            seq=0,
            headers={
                **entry.headers,
                H.ACTOR: producer,
                (H.ITEM if split is None else H.PARTITION_ITEM): str(entry.item),
            },
            payload=entry.payload,
            source=f"{subject}:{producer}#{entry.item}",
            replayed=True,
            origin=origin,
        )
        await next(replayed)
        if replayed.message is not None:
            self._last_data[(subject, producer)] = replayed.message.data
        host.stats.replayed += 1
        host.progressed()

    async def _report_replayed(
        self, subject: str, producer: str, filled: list[list[int]], *, late: bool
    ) -> None:
        host = self._host
        assert host is not None
        for a, b in filled:
            await host.event(
                Replayed(
                    name=host.id,
                    subject=subject,
                    producer=producer,
                    first=a,
                    last=b,
                    count=b - a + 1,
                    late=late,
                )
            )

    def tick(self) -> float | None:
        return RETRY_FIRST

    async def after_batch(self) -> None:
        """Ask again for the pending ranges, when due (see the module)."""
        host = self._host
        if not self.pending or host is None or host.clock.monotonic() < self._retry_at:
            return
        answered = True
        for subject, producers in list(self.pending.items()):
            for producer in list(producers):
                answered = await self._retry(subject, producer) and answered
            if not producers:
                del self.pending[subject]
        self._retry_wait = RETRY_FIRST if answered else min(self._retry_wait * 2, RETRY_MAX)
        self._retry_at = host.clock.monotonic() + self._retry_wait

    async def _retry(self, subject: str, producer: str) -> bool:
        """Replay ``producer``'s pending ranges late; whether its history answered."""
        host = self._host
        assert host is not None
        runs = self.pending[subject][producer]
        while runs:
            first, last = runs[0]
            filled: list[list[int]] = []
            missing: list[Gap] = []
            try:
                async with contextlib.aclosing(
                    fetch_history(
                        host.fabric, producer, subject, first, last, timeout=RETRY_TIMEOUT
                    )
                ) as replay:
                    async for entry in replay:
                        if isinstance(entry, Gap):
                            missing.append(entry)
                            continue
                        await self._hand_replayed(host.submit, subject, producer, entry, None)
                        _add_run(filled, entry.item)
                        runs[0][0] = entry.item + 1
            except ReplayUnavailable as exc:
                host.log.info(
                    "replay_retry_failed", subject=subject, producer=producer, error=str(exc)
                )
                await self._report_replayed(subject, producer, filled, late=True)
                return False
            except ReplayError as exc:  # the producer answered nonsense: give the rest up
                host.log.warning(
                    "replay_failed", subject=subject, producer=producer, error=str(exc)
                )
                missing = [g for g in missing if g.last < runs[0][0]]
                missing.append(Gap(subject, runs[0][0], last))
            await self._report_replayed(subject, producer, filled, late=True)
            for gap in missing:
                if gap.first <= gap.last:
                    await self._lost(subject, producer, gap.first, gap.last, gap.count, final=True)
            runs.pop(0)
        del self.pending[subject][producer]
        return True

    async def _lost(
        self,
        subject: str,
        producer: str | None,
        first: int,
        last: int,
        count: int,
        *,
        pending: bool = False,
        final: bool = False,
    ) -> None:
        """Report ``first..last`` lost (``final``: the settling of a pending range, counted
        when it was first reported)."""
        host = self._host
        assert host is not None
        if not final:
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
                pending=pending,
            )
        )

    async def _reconstruct(
        self, next: Next, item: InputItem, producer: str | None, count: int, first: int
    ) -> bool:
        """Hand reconstructed stand-ins for ``count`` lost items down the chain, if configured;
        whether it did.

        Lost items have no key, so no partition of a keyed group can claim them.
        """
        reconstructor = self.reconstructors.get(item.subject)
        if reconstructor is None or count <= 0 or self._partitioned:
            return False
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
            return False
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
        return True

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


def _add_run(runs: list[list[int]], number: int) -> None:
    """Add item ``number`` to ``runs`` (increasing ``[first, last]`` ranges)."""
    if runs and runs[-1][1] == number - 1:
        runs[-1][1] = number
    else:
        runs.append([number, number])
