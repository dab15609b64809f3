"""Partitioned subjects: a keyed input split so each partition reads only its own items.

A subject partitioned into ``n`` keeps its stream, which also captures
``<subject>.~p.*`` and says ``n`` in its metadata (``diaspora.partitions``).
A producer that knows the subject is partitioned publishes an item with key
``key`` to ``<subject>.~p.<k>``, ``k = partition_of(key, n)``, and numbers its
items per partition subject (so a partition sees its producers' items
without holes); partition ``k``'s consumer filters ``<subject>.~p.<k>`` and
``<subject>`` itself, so it is delivered its share and whatever plain
publishers put on the bare subject (which every partition then reads and
filters by key, as an unpartitioned input). Total reads equal the input when
every producer keys its items.

The split is the producer's, not the server's: a server mapping
(``{{partition(n, 1)}}``) partitions on a subject token, so the key would
have to be in the subject and the producer's item numbers would still be
global, leaving every partition holes to "recover". ``n`` is fixed once
chosen (the unit of state: each partition's state is in its checkpoint);
asking for another ``n`` on the same subject is refused.

>>> partition_of("sensor-7", 4)
2
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import anyio
import nats.errors
import nats.js.errors
from nats.js.api import StreamInfo

from diaspora.errors import ConfigError, FabricUnavailable, StreamNotFound
from diaspora.fabric._consumer import ConsumerSettings, Credit, Delivery, PullConsumer
from diaspora.fabric._naming import (
    partition_base,
    partition_pattern,
    partition_subject,
    stream_name,
)
from diaspora.fabric._streams import is_bridged
from diaspora.log import get_logger

if TYPE_CHECKING:
    from diaspora.clock import Clock
    from diaspora.fabric._fabric import Fabric

__all__ = [
    "METADATA_KEY",
    "consumer_progress",
    "copy_partitions",
    "partition_base",
    "partition_consumer",
    "partition_filters",
    "partition_of",
    "partition_stream",
    "partition_subject",
    "partitions_if_known",
    "partitions_in",
    "stream_partitions",
]

#: Stream metadata entry holding the number of partitions of a partitioned subject.
METADATA_KEY: Final = "diaspora.partitions"
#: The durable consumer a bridge reads its origin with: ``dsp-bridge-<destination domain>``.
_BRIDGE_CONSUMER: Final = "dsp-bridge-"
_TELL_TIMEOUT: Final = 2.0

_log = get_logger(component="partitions")


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions`` (CRC-32, stable across processes)."""
    return zlib.crc32(key.encode()) % partitions


def partitions_in(info: StreamInfo) -> int | None:
    """The number of partitions a stream's metadata declares (``None``: not partitioned)."""
    value = (info.config.metadata or {}).get(METADATA_KEY)
    return int(value) if value is not None and value.isdigit() else None


async def stream_partitions(fabric: Fabric, subject: str) -> int | None:
    """How many partitions ``subject`` is split into (``None``: not partitioned)."""
    return partitions_in(await fabric._streams.info(subject))


async def partitions_if_known(fabric: Fabric, subject: str, timeout: float) -> int | None:
    """:func:`stream_partitions`, or ``None`` when the fabric cannot say within ``timeout``.

    For a producer: publishing to the bare subject is always correct (every
    partition reads it), only dearer, so an unanswered look-up is not an error.
    """
    if not fabric.is_connected:
        return None
    with anyio.move_on_after(timeout):
        try:
            return await stream_partitions(fabric, subject)
        except (nats.errors.Error, FabricUnavailable, StreamNotFound, OSError):
            return None
    return None


def partition_filters(subject: str, k: int) -> list[str]:
    """What partition ``k`` of ``subject`` consumes: its partition subject and the bare one."""
    return [partition_subject(subject, k), subject]


async def partition_stream(fabric: Fabric, subject: str, partitions: int) -> None:
    """Split ``subject`` into ``partitions`` (idempotent; another number is refused).

    >>> async def split(fabric: Fabric) -> None:
    ...     await partition_stream(fabric, "edge1.frames", 4)
    """
    where = f"partitioning {subject!r}"
    if partition_base(subject) is not None:
        raise ConfigError(f"{where}: {subject!r} is itself a partition; name the subject")
    if partitions < 1:
        raise ConfigError(f"{where}: partitions={partitions!r} must be >= 1")
    info = await fabric.require_stream(subject)
    config = info.config
    if is_bridged(config):
        raise ConfigError(
            f"{where}: stream {stream_name(subject)!r} is a bridge's copy of another site's "
            "stream; partition the subject at its origin site"
        )
    current = partitions_in(info)
    if current == partitions:
        await _tell_bridges(fabric, subject, partitions)
        return
    if current is not None:
        raise ConfigError(
            f"{where}: its stream {config.name!r} is already split into {current} partitions, "
            f"not {partitions}; the number is the unit of keyed state: keep {current} "
            "(scale-out group partitions=) or use a new subject"
        )
    config.subjects = sorted({*(config.subjects or []), partition_pattern(subject)})
    config.metadata = {**(config.metadata or {}), METADATA_KEY: str(partitions)}
    try:
        await fabric._connection.jetstream(None).update_stream(config)
    except nats.errors.Error as exc:
        raise ConfigError(f"{where}: JetStream refused the update: {exc}") from exc
    _log.info("subject_partitioned", subject=subject, partitions=partitions)
    await _tell_bridges(fabric, subject, partitions)


async def _tell_bridges(fabric: Fabric, subject: str, partitions: int) -> None:
    """Mark the copies of ``subject``'s stream at other sites (the bridges fed by a
    ``dsp-bridge-<domain>`` consumer on it) with its partitions. A copy out of reach (its
    link down) is logged, naming the bridge, and told at the next call (a scale-out group
    calls this at each start) or by ``ensure_bridge``: the origin's own work goes on."""
    name = stream_name(subject)
    connection = fabric._connection
    try:
        consumers = await connection.jetstream(None).consumers_info(name)
    except (nats.errors.Error, OSError) as exc:
        _log.warning("bridges_not_listed", subject=subject, error=repr(exc))
        return
    for consumer in consumers:
        durable = consumer.name or ""
        if not durable.startswith(_BRIDGE_CONSUMER):
            continue
        domain = durable.removeprefix(_BRIDGE_CONSUMER)
        what = f"partitioning {subject!r}: its bridge to domain {domain!r} ({durable})"
        try:
            with anyio.fail_after(_TELL_TIMEOUT):
                dest = connection.jetstream(domain)
                await copy_partitions(dest, await dest.stream_info(name), partitions, what)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            _log.warning(
                "bridge_copy_not_told",
                subject=subject,
                bridge=durable,
                domain=domain,
                error=repr(exc),
                hint="consumers there read only the bare subject until partition_stream or "
                "ensure_bridge runs again with the link up",
            )


async def copy_partitions(dest: Any, info: StreamInfo, split: int | None, what: str) -> StreamInfo:
    """Make a bridge's copy say its origin's partitions (``split``), so consumers at the
    destination read the ``<subject>.~p.<k>`` items it holds: every item (a plain actor) or
    a partition's share. A copy fed by origins split differently is refused."""
    have = partitions_in(info)
    if split is None or have == split:
        return info
    if have is not None:
        raise ConfigError(
            f"{what}: the copy {info.config.name!r} holds items split into {have} partitions "
            f"(another origin's), this origin splits them into {split}: split every origin "
            "of an aggregate alike, or bridge this one under another subject"
        )
    config = info.config
    config.metadata = {**(config.metadata or {}), METADATA_KEY: str(split)}
    try:
        updated: StreamInfo = await dest.update_stream(config)
    except nats.js.errors.BadRequestError as exc:
        raise ConfigError(f"{what}: JetStream refused the copy's partitions: {exc}") from exc
    _log.info("bridge_partitions", stream=config.name, partitions=split)
    return updated


@dataclass(frozen=True, slots=True)
class ConsumerProgress:
    """Where a durable consumer is: counts of messages, and stream sequences."""

    undelivered: int
    unacknowledged: int
    delivered_seq: int
    ack_floor_seq: int

    def unhandled(self, position: int) -> float:
        """Messages not handled by an owner whose last handled sequence is ``position``.

        The unacknowledged ones lie between the ack floor and the last delivered
        sequence; those after ``position`` are counted in proportion.

        >>> ConsumerProgress(10, 40, 200, 100).unhandled(150)
        30.0
        """
        ahead = self.delivered_seq - max(position, self.ack_floor_seq)
        span = self.delivered_seq - self.ack_floor_seq
        share = self.unacknowledged * ahead / span if span > 0 and ahead > 0 else 0.0
        return self.undelivered + share


async def consumer_progress(fabric: Fabric, subject: str, consumer: str) -> ConsumerProgress | None:
    """Where durable ``consumer`` of ``subject``'s stream is (``None``: no answer, or none yet)."""
    js = fabric._connection.jetstream(None)
    try:
        info = await js.consumer_info(stream_name(subject), consumer)
    except (nats.errors.Error, FabricUnavailable, OSError):
        return None
    delivered = info.delivered.stream_seq if info.delivered is not None else None
    floor = info.ack_floor.stream_seq if info.ack_floor is not None else None
    return ConsumerProgress(
        int(info.num_pending or 0),
        int(info.num_ack_pending or 0),
        int(delivered or 0),
        int(floor or 0),
    )


async def last_seq_of(fabric: Fabric, subject: str, filters: Sequence[str]) -> int:
    """The newest stream sequence of ``subject``'s stream matching one of ``filters`` (0: none)."""
    js = fabric._connection.jetstream(None)
    last = 0
    for subject_filter in filters:
        try:
            msg = await js.get_msg(stream_name(subject), subject=subject_filter)
        except nats.js.errors.NotFoundError:
            continue
        last = max(last, int(msg.seq or 0))
    return last


def partition_consumer(
    fabric: Fabric,
    subject: str,
    name: str,
    filters: Sequence[str],
    *,
    start_seq: int,
    deliver: Callable[[Delivery], None],
    credit: Credit,
    settings: ConsumerSettings,
    clock: Clock | None = None,
) -> PullConsumer:
    """A durable pull consumer of ``subject``'s stream delivering only ``filters``.

    Like :meth:`Fabric.pull_consumer`, whose deliveries it also names
    ``subject``; its stream sequences have holes (the other partitions).
    """
    return PullConsumer(
        fabric._connection,
        subject,
        name,
        start_seq=start_seq,
        deliver=deliver,
        credit=credit,
        settings=settings,
        reconnects=lambda: fabric.reconnects,
        clock=clock,
        filters=filters,
    )
