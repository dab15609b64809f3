"""``emit``: stamp the message id and headers, then run the outbound chain to the publisher.

An output to a partitioned subject (keyed scale-out, see
:mod:`diaspora.fabric._partitions`) goes to its key's partition subject and
is numbered there too (``Diaspora-Partition-Item``; the history keeps it
under that subject and number); without ``key=`` it raises
:class:`~diaspora.errors.PartitionKeyRequired`. Whether an unpartitioned
output was split since is looked up again every :data:`PARTITIONS_RECHECK_S`
seconds.

Every output carries ``Nats-Msg-Id``: ``<actor>:<input source>:<output
index>`` inside ``handle``, ``<actor>:<subject>:<item>`` in a source, or the
caller's own ``msg_id`` (a view names a group by view, key and generation,
whichever input completes it). The
outbound stages (history tap, output scan, flow gate) run between the
stamp and the publisher. The emitter keeps the ``outputs`` checkpoint
section: the last item number per output subject, and a stream sequence of
each output known to precede everything emitted after the checkpoint (where
a scan for already-emitted outputs starts after a long outage).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from diaspora import codec
from diaspora.actor._handle import HANDLING
from diaspora.errors import PartitionKeyRequired
from diaspora.fabric import headers as H
from diaspora.fabric._naming import check_subject
from diaspora.fabric._partitions import partition_of, partition_subject, partitions_if_known
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.fabric._reader import read_stored
from diaspora.stage import Host, NextOut, OutputItem, Stage, chain

__all__ = ["PARTITIONS_RECHECK_S", "Emitter", "OutputScan", "required_window"]

#: Seconds between looking up again whether an unpartitioned output was split since.
PARTITIONS_RECHECK_S: Final = 2.0


def required_window(checkpoint_interval: float, restart_allowance: float) -> float:
    """The duplicate window (s) an actor's output streams need: ``interval + allowance``.

    Outputs emitted after the last checkpoint are re-emitted on replay; the
    oldest of them is at most ``checkpoint_interval`` seconds older than the
    crash, and the restart must replay it within ``restart_allowance``.

    >>> required_window(5.0, 60.0)
    65.0
    """
    return checkpoint_interval + restart_allowance


class OutputScan(Stage):
    """After an outage longer than half the duplicate window, skip outputs already emitted.

    JetStream forgets message ids after its duplicate window; if half of it
    has passed since the checkpoint's snapshot, the ids of this actor's
    outputs made since then are read (headers only) and not published again.
    """

    name = "output_scan"

    def __init__(self) -> None:
        self._skip: set[str] = set()
        self._host: Host | None = None

    async def scan(self, host: Host, snapshot_at: float, outputs: Mapping[str, Any]) -> None:
        """Learn which outputs were emitted since ``snapshot_at`` (call before consuming).

        ``outputs`` is the emitter's checkpoint section (items and out_seqs per subject).
        """
        self._host = host
        age = time.time() - snapshot_at
        out_seqs: Mapping[str, int] = outputs.get("out_seqs", {})
        for subject in sorted(set(out_seqs) | set(outputs.get("items", {}))):
            last_seq = out_seqs.get(subject, 0)
            window = await host.fabric.duplicate_window(subject)
            if window is None or age < window / 2:
                continue
            found = 0
            async for stored in read_stored(
                host.fabric, subject, start_seq=last_seq + 1, headers_only=True
            ):
                if stored.headers.get(H.ACTOR) == host.id:
                    msg_id = stored.headers.get(H.MSG_ID)
                    if msg_id:
                        self._skip.add(msg_id)
                        found += 1
            host.log.info(
                "outputs_scanned",
                subject=subject,
                from_seq=last_seq + 1,
                own_outputs=found,
                checkpoint_age_s=round(age, 1),
                window_s=window,
            )

    def overrides(self, hook: str) -> bool:
        return hook == "outbound" and bool(self._skip)

    async def outbound(self, out: OutputItem, next: NextOut) -> None:
        if out.msg_id in self._skip:
            self._skip.discard(out.msg_id)
            assert self._host is not None
            self._host.stats.skipped_replay += 1
            return
        await next(out)


class Emitter(Stage):
    """Stamps outputs, drives them through the outbound chain, keeps the ``outputs`` section."""

    name = "emitter"
    section = "outputs"

    def __init__(self, host: Host, ensure_output: Callable[[str], Any]) -> None:
        self._host = host
        self._ensure_output = ensure_output
        self.publisher: OrderedPublisher | None = None
        #: per output subject: its partitions (``None``: not partitioned), once looked up
        self.partitions: dict[str, int | None] = {}
        self._recheck: dict[str, float] = {}
        #: the last item number emitted per output subject (per partition subject if split)
        self.items: dict[str, int] = {}
        #: per output subject: a stream sequence preceding every output since the checkpoint
        self.out_seqs: dict[str, int] = {}
        #: per output subject: item numbers left out on purpose since its last output
        self.thinned: dict[str, int] = {}
        self.ready: set[str] = set()
        self._chain: NextOut = self._publish
        #: no outbound stage: emit publishes itself (one coroutine less per output)
        self._direct = True
        #: called after each output of a source's ``produce`` (not inside ``handle``)
        self.source_emitted: Callable[[], None] | None = None

    def build(self, stages: Sequence[Stage]) -> None:
        """Chain the outbound stages (first in the list runs first) before the publisher."""
        self._chain = chain(stages, "outbound", self._publish)
        self._direct = not any(s.overrides("outbound") for s in stages)

    def snapshot(self) -> Any:
        publisher = self.publisher
        out_seqs = dict(self.out_seqs)
        if publisher is not None:
            out_seqs.update(publisher.last_seq)
        section = {"items": dict(self.items), "out_seqs": out_seqs}
        if self.thinned:
            section["thinned"] = dict(self.thinned)
        return section

    def restore(self, data: Any, version: int) -> None:
        self.items = {str(k): int(v) for k, v in data.get("items", {}).items()}
        self.out_seqs = {str(k): int(v) for k, v in data.get("out_seqs", {}).items()}
        self.thinned = {str(k): int(v) for k, v in data.get("thinned", {}).items()}

    def leave_out(self, subject: str, count: int = 1) -> None:
        """Skip the next ``count`` item numbers of ``subject`` on purpose; the next output to
        it says so (``Diaspora-Thinned``), so consumers neither ask for them nor call them
        lost (see :meth:`diaspora.Actor.leave_out`)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(
                f"actor {self._host.id!r}: leave_out({subject!r}, {count!r}): "
                "count must be an integer >= 1"
            )
        if subject not in self.ready:
            check_subject(subject, where=f"actor {self._host.id!r}: leave_out subject")
        self.items[subject] = self.items.get(subject, 0) + count
        self.thinned[subject] = self.thinned.get(subject, 0) + count

    async def emit(
        self,
        subject: str,
        data: Any,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        item: int | None = None,
        msg_id: str | None = None,
    ) -> None:
        host = self._host
        publisher = self.publisher
        if publisher is None:
            raise RuntimeError(f"actor {host.id!r}: emit() outside the running actor")
        if subject not in self.ready:
            check_subject(subject, where=f"actor {host.id!r}: emit subject")
            await self._ensure_output(subject)
        partitions = self.partitions.get(subject, 0)
        if partitions is None:
            if time.monotonic() >= self._recheck[subject]:
                # a scale-out group may split it while we run: looked up again now and then,
                # in the background (the bare subject stays correct meanwhile, only dearer)
                self._recheck[subject] = time.monotonic() + PARTITIONS_RECHECK_S
                host.task_group.start_soon(self._look_up, subject)
        elif partitions == 0:  # the first output to it: looked up before it is published
            partitions = await self._look_up(subject)
        k = None if partitions is None else self._partition(subject, partitions, key)
        hdrs = dict(headers) if headers else {}
        payload = codec.encode(data)
        last = self.items.get(subject, 0)
        number = item if item is not None else last + 1
        if number > last:
            self.items[subject] = number
        target, numbered = subject, number
        if k is not None:  # published to, and numbered on, its key's partition too
            target = partition_subject(subject, k)
            numbered = self.items[target] = self.items.get(target, 0) + 1
            hdrs[H.PARTITION] = str(k)
            hdrs[H.PARTITION_ITEM] = str(numbered)
        handling = HANDLING.get()
        if handling is not None:
            if msg_id is None:
                msg_id = f"{host.id}:{handling.source}:{handling.outputs}"
                handling.outputs += 1
            hdrs[H.SOURCE] = handling.source
            message = handling.message
            if message is not None and message.reconstructed:
                hdrs[H.RECONSTRUCTED] = "1"
        elif msg_id is None:
            msg_id = f"{host.id}:{subject}:{number}"
        hdrs[H.ACTOR] = host.id
        hdrs[H.ITEM] = str(number)
        left_out = self.thinned.pop(subject, 0)
        if left_out and number == last + 1:  # right after the numbers left out
            hdrs[H.THINNED] = str(left_out)
        hdrs[H.EMITTED_AT] = repr(time.time())
        if key is not None:
            hdrs[H.KEY] = key
        if self._direct:  # _publish, inlined
            await publisher.publish(target, payload, headers=hdrs, msg_id=msg_id)
            host.stats.emitted += 1
        else:
            source = handling.source if handling is not None else None
            await self._chain(OutputItem(target, payload, hdrs, msg_id, numbered, source))
        if handling is None and self.source_emitted is not None:
            self.source_emitted()

    async def _look_up(self, subject: str) -> int | None:
        """Whether ``subject`` is split into partitions now (``None``: not, or no answer)."""
        partitions = await partitions_if_known(self._host.fabric, subject, timeout=1.0)
        self.partitions[subject] = partitions
        self._recheck[subject] = time.monotonic() + PARTITIONS_RECHECK_S
        return partitions

    def _partition(self, subject: str, partitions: int, key: str | None) -> int:
        if key is None:
            raise PartitionKeyRequired(
                f"actor {self._host.id!r}: emit to {subject!r} without key=: the subject is "
                f"split into {partitions} partitions (keyed scale-out), so each item needs "
                f"the key that picks its partition: emit({subject!r}, data, key=...)"
            )
        return partition_of(key, partitions)

    async def _publish(self, out: OutputItem) -> None:
        publisher = self.publisher
        assert publisher is not None
        await publisher.publish(out.subject, out.payload, headers=out.headers, msg_id=out.msg_id)
        out.published = True
        self._host.stats.emitted += 1
