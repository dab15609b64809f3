"""Stream administration: the limits value type, and creating, growing and reading streams.

A stream is named by :func:`~diaspora.fabric._naming.stream_name` of the one
subject it captures, in the connected server's JetStream domain or the one
named by ``domain=``. An event input (a pattern under ``diaspora.events.``)
is a filter of the ``DIASPORA_EVENTS`` stream, which captures them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

import nats.js.errors
from nats.js.api import DiscardPolicy, StorageType, StreamConfig, StreamInfo

from diaspora.errors import ConfigError, FabricUnavailable, StreamNotFound
from diaspora.fabric._naming import (
    DLQ_PREFIX,
    DLQ_STREAM,
    EVENTS_PREFIX,
    EVENTS_STREAM,
    check_input,
    check_subject,
    is_event_input,
    stream_name,
)

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from diaspora.fabric._connection import Connection

__all__ = ["DEFAULT_DUPLICATE_WINDOW", "StreamLimits", "Streams"]

#: JetStream's own default de-duplication window, seconds.
DEFAULT_DUPLICATE_WINDOW: Final = 120.0


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Retention limits of one stream; ``None`` means unlimited.

    ``duplicate_window`` (seconds) is how long JetStream remembers
    ``Nats-Msg-Id`` values; see the README for how it must relate to an
    actor's checkpoint interval. ``discard`` says what a full stream does:
    drop its oldest messages (``"old"``) or refuse new ones (``"new"``: the
    publisher gets :class:`~diaspora.errors.StreamFull`).
    """

    max_msgs: int | None = None
    max_bytes: int | None = None
    max_age: float | None = None
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW
    replicas: int = 1
    storage: Literal["file", "memory"] = "file"
    discard: Literal["old", "new"] = "old"

    def __post_init__(self) -> None:
        for field in ("max_msgs", "max_bytes", "max_age"):
            value = getattr(self, field)
            if value is not None and value <= 0:
                raise ConfigError(f"stream limits: {field}={value!r} must be positive (or None)")
        if self.duplicate_window <= 0:
            raise ConfigError(
                f"stream limits: duplicate_window={self.duplicate_window!r} must be > 0"
            )
        if self.max_age is not None and self.duplicate_window > self.max_age:
            raise ConfigError(
                f"stream limits: duplicate_window={self.duplicate_window}s exceeds "
                f"max_age={self.max_age}s; JetStream requires window <= max_age"
            )
        if self.replicas not in (1, 3, 5):
            raise ConfigError(f"stream limits: replicas={self.replicas!r}; use 1, 3 or 5")
        if self.storage not in ("file", "memory"):
            raise ConfigError(f"stream limits: storage={self.storage!r}; use 'file' or 'memory'")
        if self.discard not in ("old", "new"):
            raise ConfigError(f"stream limits: discard={self.discard!r}; use 'old' or 'new'")


_EVENTS_LIMITS: Final = StreamLimits(max_msgs=1_000_000, max_age=24 * 3600.0, duplicate_window=60.0)


class Streams:
    """The streams of one connection, with the limits this fabric last applied to each."""

    def __init__(self, connection: Connection, log: FilteringBoundLogger) -> None:
        self._connection = connection
        self._log = log
        self._applied: dict[tuple[str | None, str], StreamLimits] = {}

    def clear(self) -> None:
        self._applied.clear()

    async def info(
        self, subject: str, *, domain: str | None = None, stream: str | None = None
    ) -> StreamInfo:
        """The stream capturing ``subject`` (or named ``stream``), else :class:`StreamNotFound`."""
        name = stream or stream_name(subject)
        where = f" in domain {domain!r}" if domain is not None else ""
        try:
            return await self._connection.jetstream(domain).stream_info(name)
        except nats.js.errors.ServiceUnavailableError:
            raise FabricUnavailable(
                f"no JetStream answers{where} for stream {name!r}: check the domain name "
                "and the link to the site that serves it"
            ) from None
        except nats.js.errors.NotFoundError:
            raise StreamNotFound(
                f"no stream {name!r}{where} for subject {subject!r}: nothing declared it "
                "(Fabric.ensure_stream, a [streams] table) and nothing was published to it yet"
            ) from None

    async def consumer_backlog(self, subject: str, consumer: str) -> int | None:
        """Pending plus unacknowledged messages of durable ``consumer`` on ``subject``'s stream.

        ``None`` when the server does not answer or has no such consumer (yet).
        """
        try:
            info = await self._connection.jetstream(None).consumer_info(
                stream_name(subject), consumer
            )
        except (nats.errors.Error, FabricUnavailable, OSError):
            return None
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def bounds(self, subject: str, *, domain: str | None) -> tuple[int, int]:
        """``(first_seq, last_seq)`` of the messages of ``subject`` in the stream capturing it.

        For an event input, the first and last events matching the pattern;
        with none, ``(last + 1, last)`` of the whole events stream.
        """
        state = (await self.info(subject, domain=domain)).state
        first, last = state.first_seq, state.last_seq
        if not is_event_input(subject) or last == 0:
            return first, last
        js = self._connection.jetstream(domain)
        try:
            newest = await js.get_msg(EVENTS_STREAM, subject=subject)
            oldest = await js.get_msg(EVENTS_STREAM, seq=first, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return last + 1, last
        return oldest.seq or first, newest.seq or last

    async def ensure(
        self, subject: str, limits: StreamLimits, *, reserved_ok: bool, domain: str | None
    ) -> StreamInfo:
        check_subject(subject, where="stream", reserved_ok=reserved_ok)
        key = (domain, subject)
        if self._applied.get(key) == limits:
            try:
                return await self._connection.jetstream(domain).stream_info(stream_name(subject))
            except nats.js.errors.NotFoundError:
                del self._applied[key]  # deleted behind our back: create it again
        info = await self._apply(stream_name(subject), [subject], limits, domain)
        self._applied[key] = limits
        return info

    async def require(
        self, subject: str, *, min_duplicate_window: float | None, domain: str | None
    ) -> StreamInfo:
        if is_event_input(subject):
            check_input(subject, where="stream")
            return await self._require_events(domain)
        check_subject(subject, where="stream")
        js = self._connection.jetstream(domain)
        name = stream_name(subject)
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            window = max(DEFAULT_DUPLICATE_WINDOW, min_duplicate_window or 0.0)
            limits = StreamLimits(duplicate_window=window)
            info = await self._apply(name, [subject], limits, domain)
            self._applied[(domain, subject)] = limits
            return info
        config = info.config
        if is_bridged(config):
            if min_duplicate_window is not None:
                _refuse_bridged(config, name)  # an output: it is published at its origin
            return info  # a bridge's copy at this site: consumed like any stream
        if sorted(config.subjects or []) != [subject]:
            raise ConfigError(
                f"stream {name!r} already captures {config.subjects}, not [{subject!r}]: "
                "two subjects map to the same stream name (dots become underscores); rename one"
            )
        current = config.duplicate_window or 0.0
        if min_duplicate_window is None or current >= min_duplicate_window:
            return info
        if config.max_age and config.max_age < min_duplicate_window:
            raise ConfigError(
                f"stream {name!r}: needs a duplicate window of {min_duplicate_window:g}s "
                f"(see the window rule in the README) but max_age is {config.max_age:g}s; "
                "raise max_age or checkpoint more often"
            )
        config.duplicate_window = min_duplicate_window
        info = await js.update_stream(config)
        self._log.info("stream_window_grown", stream=name, duplicate_window_s=min_duplicate_window)
        return info

    async def _require_events(self, domain: str | None) -> StreamInfo:
        """The events stream, created if missing (a fabric made with ``events_stream=False``)."""
        try:
            return await self._connection.jetstream(domain).stream_info(EVENTS_STREAM)
        except nats.js.errors.NotFoundError:
            return await self._apply(EVENTS_STREAM, [f"{EVENTS_PREFIX}.>"], _EVENTS_LIMITS, domain)

    async def ensure_reserved(self) -> None:
        """The events stream and the dead-letter stream every fabric relies on."""
        await self._apply(EVENTS_STREAM, [f"{EVENTS_PREFIX}.>"], _EVENTS_LIMITS, None)
        # dead letters are kept until someone deals with them (no age limit)
        await self._apply(
            DLQ_STREAM,
            [f"{DLQ_PREFIX}.>"],
            StreamLimits(duplicate_window=DEFAULT_DUPLICATE_WINDOW),
            None,
        )

    async def _apply(
        self, name: str, subjects: list[str], limits: StreamLimits, domain: str | None
    ) -> StreamInfo:
        js = self._connection.jetstream(domain)
        try:
            existing = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            existing = None
        config = StreamConfig(
            name=name,
            subjects=subjects,
            max_msgs=limits.max_msgs if limits.max_msgs is not None else -1,
            max_bytes=limits.max_bytes if limits.max_bytes is not None else -1,
            max_age=limits.max_age if limits.max_age is not None else 0,
            duplicate_window=limits.duplicate_window,
            num_replicas=limits.replicas,
            storage=StorageType.FILE if limits.storage == "file" else StorageType.MEMORY,
            discard=DiscardPolicy.NEW if limits.discard == "new" else DiscardPolicy.OLD,
            allow_direct=True,
        )
        if existing is None:
            try:
                info = await js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                raise ConfigError(
                    f"stream {name!r} for {subjects}: JetStream refused it: {exc}"
                ) from exc
            self._log.info("stream_created", stream=name, subjects=subjects, domain=domain)
            return info
        current = existing.config
        _refuse_bridged(current, name)
        if sorted(current.subjects or []) != sorted(subjects):
            raise ConfigError(
                f"stream {name!r} already captures {current.subjects}, not {subjects}: "
                "two subjects map to the same stream name (dots become underscores); rename one"
            )
        if (current.storage or StorageType.FILE) != config.storage:
            raise ConfigError(
                f"stream {name!r} exists with storage {current.storage}; "
                f"storage cannot change (delete the stream to recreate it)"
            )
        config.duplicate_window = max(config.duplicate_window or 0, current.duplicate_window or 0)
        if config.max_age and config.duplicate_window > config.max_age:
            config.duplicate_window = config.max_age
        same = (
            current.max_msgs == config.max_msgs
            and current.max_bytes == config.max_bytes
            and (current.max_age or 0) == config.max_age
            and current.duplicate_window == config.duplicate_window
            and (current.num_replicas or 1) == config.num_replicas
            and (current.discard or DiscardPolicy.OLD) == config.discard
            and bool(current.allow_direct)  # a stream made elsewhere gains direct gets
        )
        if same:
            return existing
        try:
            info = await js.update_stream(config)
        except nats.js.errors.BadRequestError as exc:
            raise ConfigError(f"stream {name!r}: JetStream refused the update: {exc}") from exc
        self._log.info("stream_updated", stream=name, subjects=subjects, domain=domain)
        return info


def is_bridged(config: StreamConfig) -> bool:
    """Whether a stream is a bridge's copy (a source or mirror of another domain, no subjects)."""
    return not config.subjects and (config.mirror is not None or bool(config.sources))


def _refuse_bridged(config: StreamConfig, name: str) -> None:
    if not is_bridged(config):
        return
    origin = config.mirror or (config.sources[0] if config.sources else None)
    api = origin.external.api if origin is not None and origin.external is not None else "?"
    raise ConfigError(
        f"stream {name!r} here is a bridge's copy of {api} (no subjects of its own): "
        "declare and publish the subject at its origin site, consume it here"
    )
