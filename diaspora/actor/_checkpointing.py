"""Taking checkpoints without stalling ``handle``: snapshot between messages, write behind.

A snapshot captures, between two messages, the actor's encoded state, its
positions and every stage's checkpoint section, plus how many outputs the
publisher had queued. A background writer waits until those outputs are
acknowledged, then writes the record (compare-and-set, so a stale instance
is fenced out), retrying with backoff while the fabric refuses.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import anyio

from diaspora import codec
from diaspora.actor._actor import Actor
from diaspora.actor._checkpoint import CheckpointSlot, Section
from diaspora.backoff import Backoff
from diaspora.errors import CheckpointError, FabricUnavailable, FencedOut
from diaspora.events import Checkpointed
from diaspora.fabric._publisher import OrderedPublisher
from diaspora.stage import Host, Stage

__all__ = ["Checkpointer"]

#: Retrying a refused checkpoint write: 0.1 s doubling to 2 s, no jitter (one writer).
_RETRY: Final = Backoff(initial=0.1, max=2.0, factor=2.0, jitter=0.0)
_RNG: Final = random.Random()
_FINAL_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class _Snapshot:
    serial: int
    positions: dict[str, int]
    sections: dict[str, Section]
    #: publisher index: outputs [0, upto) must be acknowledged before this is written
    upto: int
    encoded_state: bytes
    at: float


class Checkpointer:
    """Snapshots and writes the checkpoints of one runtime start."""

    def __init__(
        self,
        host: Host,
        actor: Actor,
        slot: CheckpointSlot,
        publisher: OrderedPublisher,
        stages: Sequence[Stage],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._host = host
        self._actor = actor
        self._slot = slot
        self._publisher = publisher
        self._sectioned = [s for s in stages if s.section is not None]
        self._on_error = on_error
        self._pending: _Snapshot | None = None
        self._serial = 0
        self._written_serial = 0
        self._wanted = anyio.Event()
        self._written = anyio.Event()
        self.error: BaseException | None = None
        #: inputs handled (or items emitted by a source) since the last snapshot
        self.since = 0
        self.last_at = host.clock.monotonic()

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def due(self, every: int | None, interval: float) -> bool:
        """Whether ``every`` items or ``interval`` seconds have passed since the last snapshot."""
        if not self.since:
            return False
        if every is not None and self.since >= every:
            return True
        return self._host.clock.monotonic() - self.last_at >= interval

    def snapshot(self, positions: Mapping[str, int]) -> None:
        """Capture state, positions and sections now (between messages)."""
        host = self._host
        try:
            encoded = codec.encode(self._actor.snapshot())
        except codec.EncodeError as exc:
            raise CheckpointError(
                f"actor {host.id!r}: snapshot() returned something the codec cannot store: {exc}"
            ) from exc
        sections = {}
        for stage in self._sectioned:
            assert stage.section is not None
            sections[stage.section] = Section(stage.section_version, stage.snapshot())
        self._serial += 1
        self._pending = _Snapshot(
            serial=self._serial,
            positions=dict(positions),
            sections=sections,
            upto=self._publisher.enqueued,
            encoded_state=encoded,
            at=time.time(),
        )
        self.since = 0
        self.last_at = host.clock.monotonic()
        self._wanted.set()

    async def run(self) -> None:
        """The writer task; a failure goes to ``on_error`` (the runtime crashes with it)."""
        try:
            await self._write_loop()
        except Exception as exc:
            self.error = exc
            self._written.set()
            self._on_error(exc)

    async def _write_loop(self) -> None:
        host = self._host
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            attempt = 0
            while (snap := self._pending) is not None:
                await self._publisher.flush(upto=snap.upto)
                try:
                    record = await self._slot.save(
                        positions=snap.positions,
                        sections=snap.sections,
                        snapshot_at=snap.at,
                        encoded_state=snap.encoded_state,
                    )
                except FencedOut:
                    raise
                except (CheckpointError, FabricUnavailable, OSError) as exc:
                    attempt += 1
                    host.log.warning("checkpoint_retry", attempt=attempt, error=repr(exc))
                    await host.clock.sleep(_RETRY.delay(attempt, _RNG))
                    continue
                attempt = 0
                if self._pending is snap:
                    self._pending = None
                self._written_serial = snap.serial
                host.stats.checkpoints += 1
                self._written.set()
                self._written = anyio.Event()
                await host.event(
                    Checkpointed(
                        name=host.id,
                        version=record.version,
                        positions=snap.positions,
                        handled=host.stats.handled,
                        emitted=host.stats.emitted,
                    )
                )

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    async def wait_written(self, serial: int | None = None) -> None:
        """Wait until the snapshot ``serial`` (default: the newest) is written."""
        target = self._serial if serial is None else serial
        while self._written_serial < target:
            self.raise_error()
            await self._written.wait()
        self.raise_error()

    async def final(self, positions: Mapping[str, int], take_snapshot: bool) -> None:
        """On a normal stop: snapshot what is new, wait for it, flush the publisher."""
        self.raise_error()
        if self.since or self._pending is not None:
            if take_snapshot:
                self.snapshot(positions)
            with anyio.move_on_after(_FINAL_TIMEOUT_S) as scope:
                await self.wait_written()
            if scope.cancelled_caught:
                self._host.log.warning("final_checkpoint_timeout", serial=self._serial)
        with anyio.move_on_after(_FINAL_TIMEOUT_S):
            await self._publisher.flush()
