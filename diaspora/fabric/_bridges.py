"""Bridges: one subject's stream moved from one site (JetStream domain) to another.

A :class:`Bridge` names a subject, the domain it is published in (its
*origin*) and the domain that should hold a copy (its *destination*):

- **up** (edge → hub): the destination stream *sources* the origin stream;
- **down** (hub → edge): the destination stream *mirrors* it.

Either way the destination stream has the subject's own stream name
(:func:`~diaspora.fabric.stream_name`) and **no subjects** of its own: the
same subject bound in two domains would be stored twice (every publish
crosses the leaf link), and a source on top of it would store it a third
time. Because the name is the same, everything that finds a stream by its
subject finds the copy at the destination: an actor there consumes the
bridged subject as any input (its pull consumer filters the copy by subject;
``require_stream`` and ``stream_bounds`` accept it), with no registry to
consult. The stream's own config (its source or mirror) records the bridge,
so every process connected to the site sees it.

The server fetches the origin's messages through a durable push consumer
created on the origin ("bring your own", flow-control acknowledgements) and
named in the source or mirror. A server-managed consumer takes 15-50 s to
resume after some outages (it asks for a new consumer while the link is
down, then waits 30 s for an answer that never comes and backs off); the
durable one resumes within seconds of the link returning, and of either
server restarting. ``Bridge(byo_consumer=False)`` keeps the server-managed
kind, for comparison.

Sourced copies keep ``Nats-Msg-Id`` and all custom headers; the server adds
``Nats-Stream-Source`` naming the origin stream and sequence (mirrors keep
the origin's sequences instead), which :mod:`diaspora.fabric._bridgegaps`
checks for holes. Duplicates (the same ``Nats-Msg-Id`` within
``duplicate_window`` s) are dropped by an up bridge; mirrors never de-duplicate.

>>> Bridge("edge1.frames", from_domain="edge", to_domain="hpc").direction
<Direction.UP: 'up'>
>>> Bridge("edge1.frames", "edge", "hpc").consumer_name
'dsp-bridge-hpc'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

import anyio
import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    ExternalStream,
    StorageType,
    StreamConfig,
    StreamConsumerSource,
    StreamInfo,
    StreamSource,
)

from diaspora.errors import BridgeError, FabricUnavailable, NoResponders
from diaspora.fabric import _jsapi
from diaspora.fabric._naming import check_subject, stream_name
from diaspora.fabric._partitions import METADATA_KEY as PARTITIONS_KEY
from diaspora.fabric._partitions import copy_partitions, partitions_in
from diaspora.fabric._streams import DEFAULT_DUPLICATE_WINDOW, StreamLimits
from diaspora.log import get_logger

if TYPE_CHECKING:
    from diaspora.fabric._fabric import Fabric

__all__ = ["BRIDGE_PREFIX", "Bridge", "Direction", "check_site", "ensure_bridge", "wait_site"]

#: Deliver subjects of the origin-side consumers: ``diaspora.bridge.<to>.<stream>``.
BRIDGE_PREFIX: Final = "diaspora.bridge"
#: How long a site has to answer the ``INFO`` probe before a bridge is refused.
_PROBE_TIMEOUT: Final = 2.0
_DOMAIN: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_log = get_logger(component="bridges")


class Direction(StrEnum):
    """Which way a bridge moves a stream: up by source, down by mirror."""

    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Bridge:
    """``subject``'s stream in domain ``from_domain``, copied into domain ``to_domain``.

    ``direction`` is ``"up"`` (a source: the destination may aggregate
    several origins and drops duplicate ``Nats-Msg-Id`` within
    ``duplicate_window`` seconds) or ``"down"`` (a mirror: an exact copy,
    same sequences). ``byo_consumer=False`` lets the server manage its own
    consumer (slow resume after some outages; for comparisons only).

    >>> Bridge("hpc.model", from_domain="hpc", to_domain="edge", direction="down").name
    'hpc_model@edge'
    """

    subject: str
    from_domain: str
    to_domain: str
    direction: Direction = Direction.UP
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW
    max_ack_pending: int = 10_000
    byo_consumer: bool = True
    stream: str = field(init=False)

    def __post_init__(self) -> None:
        where = f"bridge {self.subject!r}"
        check_subject(self.subject, where=where)
        for name in ("from_domain", "to_domain"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _DOMAIN.match(value):
                raise BridgeError(
                    f"{where}: {name}={value!r} is not a JetStream domain name "
                    "(letters, digits, '_' or '-'; the site's jetstream domain)"
                )
        if self.from_domain == self.to_domain:
            raise BridgeError(
                f"{where}: from_domain and to_domain are both {self.from_domain!r}; "
                "a bridge joins two different sites"
            )
        try:
            object.__setattr__(self, "direction", Direction(self.direction))
        except ValueError:
            raise BridgeError(
                f"{where}: direction={self.direction!r} is not one of 'up', 'down'"
            ) from None
        if not self.duplicate_window > 0:
            raise BridgeError(
                f"{where}: duplicate_window={self.duplicate_window!r} must be > 0 seconds "
                "(sourced streams do not de-duplicate without one)"
            )
        if self.max_ack_pending < 1:
            raise BridgeError(f"{where}: max_ack_pending={self.max_ack_pending!r} must be >= 1")
        object.__setattr__(self, "stream", stream_name(self.subject))

    @property
    def name(self) -> str:
        """``<stream>@<to_domain>``: the copy this bridge maintains (logs and events)."""
        return f"{self.stream}@{self.to_domain}"

    @property
    def consumer_name(self) -> str:
        """The durable consumer on the origin stream that feeds the destination."""
        return f"dsp-bridge-{self.to_domain}"

    @property
    def deliver_subject(self) -> str:
        """Where the origin consumer pushes: crosses the leaf link to the destination."""
        return f"{BRIDGE_PREFIX}.{self.to_domain}.{self.stream}"

    def source(self) -> StreamSource:
        """The source (up) or mirror (down) entry of the destination stream."""
        consumer = None
        if self.byo_consumer:
            consumer = StreamConsumerSource(
                name=self.consumer_name, deliver_subject=self.deliver_subject
            )
        return StreamSource(
            name=self.stream,
            external=ExternalStream(api=_jsapi.api_prefix(self.from_domain)),
            consumer=consumer,
        )

    def describe(self) -> str:
        return f"bridge {self.subject!r} ({self.direction}: {self.from_domain} -> {self.to_domain})"


async def check_site(fabric: Fabric, domain: str, *, what: str = "site") -> dict[str, Any]:
    """The ``INFO`` answer of ``domain``'s JetStream, else :class:`BridgeError` naming the site.

    A mistyped domain otherwise fails silently: the server accepts a source
    from a domain nobody serves, and nothing ever arrives.
    """
    subject = _jsapi.info_subject(domain)
    try:
        answer = await fabric._connection.request(subject, b"", _PROBE_TIMEOUT)
    except (NoResponders, TimeoutError) as exc:
        raise BridgeError(
            f"{what}: no JetStream answers in domain {domain!r} ({subject}): check the "
            f"site's domain name (its jetstream domain) and that its link is up ({exc})"
        ) from None
    except FabricUnavailable as exc:
        raise BridgeError(f"{what}: cannot ask domain {domain!r}: {exc}") from exc
    try:
        info: dict[str, Any] = json.loads(answer.data)
    except ValueError:
        raise BridgeError(f"{what}: domain {domain!r} answered {subject} with non-JSON") from None
    if "error" in info:
        raise BridgeError(f"{what}: JetStream in domain {domain!r} refused: {info['error']}")
    return info


async def wait_site(fabric: Fabric, domain: str, *, timeout: float = 30.0) -> None:
    """Return once ``domain``'s JetStream answers (a leaf link just started, or came back).

    Raises the last :class:`BridgeError` after ``timeout`` seconds.
    """
    with anyio.move_on_after(timeout):
        while True:
            try:
                await check_site(fabric, domain)
                return
            except BridgeError:
                await anyio.sleep(0.05)
    await check_site(fabric, domain, what=f"site {domain!r} after {timeout:g}s")


async def ensure_bridge(
    fabric: Fabric, bridge: Bridge, *, limits: StreamLimits | None = None
) -> StreamInfo:
    """Create (or check) ``bridge``'s copy at its destination; idempotent.

    ``fabric`` may be connected to any site that reaches both domains
    (usually the destination). Both domains are probed first; the origin
    stream must exist (declare it at the origin with ``ensure_stream(subject,
    domain=...)``, sized with :func:`~diaspora.fabric.origin_limits`). Then
    the durable consumer is created on the origin, if missing, and the
    destination stream, whose retention is ``limits`` (default: unlimited).
    Raises :class:`~diaspora.errors.BridgeError` naming the site or stream at fault.

    >>> async def wire(fabric: Fabric) -> None:
    ...     await ensure_bridge(fabric, Bridge("edge1.frames", "edge", "hpc"))
    """
    what = bridge.describe()
    connection = fabric._connection
    await check_site(fabric, bridge.from_domain, what=what)
    await check_site(fabric, bridge.to_domain, what=what)
    origin = connection.jetstream(bridge.from_domain)
    try:
        origin_info = await origin.stream_info(bridge.stream)
    except nats.js.errors.NotFoundError:
        raise BridgeError(
            f"{what}: no stream {bridge.stream!r} in domain {bridge.from_domain!r} (the origin): "
            f"declare it there first, e.g. Fabric.ensure_stream({bridge.subject!r}, "
            f"domain={bridge.from_domain!r})"
        ) from None
    dest = connection.jetstream(bridge.to_domain)
    await _check_no_overlap(dest, bridge, what)
    if bridge.byo_consumer:
        await _ensure_origin_consumer(origin, bridge)
    split = partitions_in(origin_info)
    info = await _ensure_destination(dest, bridge, limits or StreamLimits(), what, split)
    return await copy_partitions(dest, info, split, what)


async def _check_no_overlap(dest: Any, bridge: Bridge, what: str) -> None:
    """Refuse when a stream at the destination binds the subject (it would be stored twice)."""
    try:
        bound = await dest.find_stream_name_by_subject(bridge.subject)
    except nats.js.errors.NotFoundError:
        return
    raise BridgeError(
        f"{what}: stream {bound!r} in domain {bridge.to_domain!r} already captures "
        f"{bridge.subject!r}; a bridged subject must be bound only at its origin "
        f"({bridge.from_domain!r}): delete that stream or rename the subject"
    )


async def _ensure_origin_consumer(origin: Any, bridge: Bridge) -> None:
    try:
        await origin.consumer_info(bridge.stream, bridge.consumer_name)
        return  # its position is the bridge's progress: never recreate it
    except nats.js.errors.NotFoundError:
        pass
    await origin.add_consumer(
        bridge.stream,
        ConsumerConfig(
            durable_name=bridge.consumer_name,
            deliver_subject=bridge.deliver_subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.FLOW_CONTROL,
            flow_control=True,
            idle_heartbeat=1.0,  # the server requires exactly 1 s for sourcing consumers
            max_ack_pending=bridge.max_ack_pending,
        ),
    )
    _log.info("bridge_consumer_created", bridge=bridge.name, domain=bridge.from_domain)


def _destination_config(bridge: Bridge, limits: StreamLimits) -> StreamConfig:
    up = bridge.direction is Direction.UP
    return StreamConfig(
        name=bridge.stream,
        sources=[bridge.source()] if up else None,
        mirror=None if up else bridge.source(),
        duplicate_window=bridge.duplicate_window,
        max_msgs=limits.max_msgs if limits.max_msgs is not None else -1,
        max_bytes=limits.max_bytes if limits.max_bytes is not None else -1,
        max_age=limits.max_age if limits.max_age is not None else 0,
        num_replicas=limits.replicas,
        storage=StorageType.FILE if limits.storage == "file" else StorageType.MEMORY,
        discard=DiscardPolicy.OLD,
        allow_direct=True,
    )


def _same_source(a: StreamSource | None, b: StreamSource) -> bool:
    if a is None:
        return False
    api = a.external.api if a.external is not None else None
    consumer_a = (a.consumer.name, a.consumer.deliver_subject) if a.consumer else None
    consumer_b = (b.consumer.name, b.consumer.deliver_subject) if b.consumer else None
    assert b.external is not None
    return a.name == b.name and api == b.external.api and consumer_a == consumer_b


async def _ensure_destination(
    dest: Any, bridge: Bridge, limits: StreamLimits, what: str, split: int | None
) -> StreamInfo:
    config = _destination_config(bridge, limits)
    if split is not None:
        config.metadata = {PARTITIONS_KEY: str(split)}
    try:
        existing: StreamInfo = await dest.stream_info(bridge.stream)
    except nats.js.errors.NotFoundError:
        try:
            info: StreamInfo = await dest.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            raise BridgeError(f"{what}: JetStream refused the destination stream: {exc}") from exc
        _log.info("bridge_created", bridge=bridge.name, direction=str(bridge.direction))
        return info
    current = existing.config
    wanted = bridge.source()
    await copy_partitions(dest, existing, split, what)  # refuses a copy split otherwise
    config.metadata = {**(current.metadata or {}), **(config.metadata or {})}
    if current.subjects:
        raise BridgeError(
            f"{what}: stream {bridge.stream!r} in domain {bridge.to_domain!r} captures "
            f"{current.subjects}; a bridge's destination has no subjects: delete it first"
        )
    if bridge.direction is Direction.DOWN:
        if not _same_source(current.mirror, wanted):
            raise BridgeError(
                f"{what}: stream {bridge.stream!r} in domain {bridge.to_domain!r} exists and is "
                "not this mirror (a mirror cannot change): delete it to recreate it"
            )
        return existing
    if current.mirror is not None:
        raise BridgeError(
            f"{what}: stream {bridge.stream!r} in domain {bridge.to_domain!r} is a mirror, "
            "not an up bridge: delete it to recreate it"
        )
    sources = list(current.sources or [])
    if (
        any(_same_source(s, wanted) for s in sources)
        and (current.duplicate_window or 0) >= bridge.duplicate_window
    ):
        return existing
    # another origin's source stays; this origin's entry is replaced (or added)
    wanted_api = wanted.external.api if wanted.external else None
    kept = [
        s
        for s in sources
        if not (s.name == wanted.name and (s.external.api if s.external else None) == wanted_api)
    ]
    config.sources = [*kept, wanted]
    config.duplicate_window = max(bridge.duplicate_window, current.duplicate_window or 0)
    try:
        info = await dest.update_stream(config)
    except nats.js.errors.BadRequestError as exc:
        raise BridgeError(f"{what}: JetStream refused the update: {exc}") from exc
    _log.info("bridge_updated", bridge=bridge.name)
    return info
