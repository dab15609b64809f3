"""Manifests kept at several sites: a majority quorum of KV buckets with sequence numbers.

A bucket's manifests live in the KV bucket ``dsp-storage-<bucket>`` of
``2 * lose + 1`` **manifest sites** (all the sites if there are fewer): the
site ``meta`` first, then the next sites in the bucket's order. Every value
carries a sequence number ``seq`` (one more than the manifest it replaces)
and the id of its writer; a deletion is a tombstone value with its own
``seq``, not a KV delete.

- **A write** reads the current value at every manifest site, then writes
  the new one at each site by compare-and-set on the revision it read
  there. It is acknowledged when a majority ``W = N // 2 + 1`` of the sites
  took it. Short of that, it is taken back where it landed (compare-and-set
  again, the old value restored), and fails: :class:`RevisionMismatch` when
  another writer moved a site meanwhile, :class:`ManifestUnavailable`
  (naming the sites that did not answer) when too few answered.
- **A read** asks every manifest site and needs ``R = N - W + 1`` answers;
  the newest value, by ``(seq, writer)``, is the manifest. Any ``R`` sites
  share one with any ``W``, so a read finds every acknowledged write; with
  ``N = 2 * lose + 1``, both go on with ``lose`` manifest sites lost.

A value is written only after the fragments it names, so whatever a
reader picks names a complete layout.

>>> metas(["hub", "a", "b", "c", "d"], "a", lose=1)
['a', 'b', 'c']
>>> metas(["hub", "a"], "hub", lose=1)
['hub', 'a']
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from diaspora.errors import FabricUnavailable, ManifestUnavailable, RevisionMismatch, StorageError
from diaspora.events import SiteUnreachable
from diaspora.fabric import Fabric, KeyValueBucket, SiteView
from diaspora.log import get_logger
from diaspora.storage._health import SiteHealth

__all__ = ["Current", "ManifestSites", "metas"]

T = TypeVar("T")


def metas(sites: Sequence[str], meta: str, *, lose: int) -> list[str]:
    """The manifest sites: ``meta``, then the sites after it (wrapping), ``2 * lose + 1`` in all."""
    start = list(sites).index(meta)
    order = [*sites[start:], *sites[:start]]
    return order[: min(len(order), 2 * lose + 1)]


@dataclass(frozen=True, slots=True)
class Current:
    """What a read found for one key: the newest value (``None``: absent or deleted), its
    ``seq`` and writer, and the revision each answering site holds it at (0: absent there)."""

    value: bytes | None
    seq: int = 0
    writer: str = ""
    revisions: Mapping[str, int] = field(default_factory=dict)
    #: the raw envelope at each answering site (to restore it if a write is taken back)
    held: Mapping[str, bytes | None] = field(default_factory=dict)


def _envelope(value: bytes | None, seq: int, writer: str) -> bytes:
    body = {"seq": seq, "by": writer, "m": None if value is None else value.decode()}
    return json.dumps(body, separators=(",", ":")).encode()


def _open(raw: bytes, where: str) -> tuple[bytes | None, int, str]:
    try:
        body = json.loads(raw)
        value = body["m"]
        return (None if value is None else value.encode()), int(body["seq"]), str(body["by"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"{where}: the manifest envelope is unreadable ({exc!r})") from exc


class ManifestSites:
    """The KV bucket ``dsp-storage-<bucket>`` at each manifest site, read and written by quorum."""

    def __init__(
        self,
        fabric: Fabric,
        domains: Mapping[str, str],
        bucket: str,
        sites: list[str],
        health: Mapping[str, SiteHealth],
        *,
        retry_after: float = 2.0,
    ) -> None:
        self.fabric, self.bucket, self.sites = fabric, bucket, sites
        self._domains = domains
        self._health = health
        self._retry_after = retry_after
        self._kv: dict[str, KeyValueBucket] = {}
        self.writes = len(sites) // 2 + 1
        self.reads = len(sites) - self.writes + 1
        self.writer = uuid.uuid4().hex[:12]
        self._log = get_logger(storage=bucket)

    async def _bucket(self, site: str) -> KeyValueBucket:
        if site not in self._kv:
            view = SiteView(self.fabric, self._domains[site])
            name = f"dsp-storage-{self.bucket}"
            try:
                self._kv[site] = await view.ensure_kv(name, history=1)
            except FabricUnavailable:
                raise
            except Exception as exc:  # the fabric's stores do not translate opening errors
                raise FabricUnavailable(
                    f"site {site!r}: opening KV bucket {name} failed: {exc!r}; is its server up "
                    "and its leaf link connected?"
                ) from exc
        return self._kv[site]

    def _forget(self, site: str) -> None:
        if self._kv.pop(site, None) is not None:
            SiteView(self.fabric, self._domains[site]).forget_kv(f"dsp-storage-{self.bucket}")

    async def _failed(self, site: str, exc: Exception) -> None:
        was_up = not self._health[site].down
        self._health[site].failed(retry_after=self._retry_after)
        if was_up:
            error = f"manifests: {str(exc)[:200]}"
            await self.fabric.emit(SiteUnreachable(name=self.bucket, site=site, error=error))

    async def _each(
        self, work: Callable[[str, KeyValueBucket], Awaitable[T]]
    ) -> dict[str, T | RevisionMismatch]:
        """Run ``work(site, kv)`` at every manifest site not marked down; the answers by site."""
        answers: dict[str, T | RevisionMismatch] = {}

        async def one(site: str) -> None:
            for attempt in (1, 2):
                opened = site in self._kv
                try:
                    kv = await self._bucket(site)
                    answers[site] = await work(site, kv)
                except FabricUnavailable as exc:
                    self._forget(site)  # a site back replaced: open (create) its bucket again
                    if opened and attempt == 1:
                        continue
                    await self._failed(site, exc)
                except RevisionMismatch as exc:
                    answers[site] = exc
                return

        async with anyio.create_task_group() as tg:
            for site in self.sites:
                if not self._health[site].down:
                    tg.start_soon(one, site)
        return answers

    def _short(self, answered: Sequence[str], need: int, action: str) -> ManifestUnavailable:
        silent = [s for s in self.sites if s not in answered]
        return ManifestUnavailable(
            f"storage bucket {self.bucket!r}: {action} needs {need} of the manifest sites "
            f"{', '.join(self.sites)}, but only {len(answered)} answered (not answering: "
            f"{', '.join(silent) or 'none'}); bring {need - len(answered)} of them back"
        )

    async def read(self, key: str) -> Current:
        """The newest value of ``key`` over a read quorum (:class:`ManifestUnavailable` short)."""

        async def get(site: str, kv: KeyValueBucket) -> tuple[bytes | None, int]:
            entry = await kv.get(key)
            return (None, 0) if entry is None else (entry.value, entry.revision)

        answers = await self._each(get)
        if len(answers) < self.reads:
            raise self._short(list(answers), self.reads, f"reading {key}")
        best: tuple[int, str] = (0, "")
        value: bytes | None = None
        revisions: dict[str, int] = {}
        held: dict[str, bytes | None] = {}
        for site, answer in answers.items():
            if isinstance(answer, RevisionMismatch):
                continue
            raw, revision = answer
            revisions[site], held[site] = revision, raw
            if raw is None:
                continue
            got, seq, writer = _open(raw, f"storage {self.bucket}/{key} at {site}")
            if (seq, writer) > best:
                best, value = (seq, writer), got
        return Current(value, best[0], best[1], revisions, held)

    async def write(self, key: str, value: bytes | None, base: Current) -> Current:
        """Write ``value`` (``None``: a tombstone) over ``base`` by compare-and-set at every
        manifest site; acknowledged by a write quorum. What is now current (a base for the next
        write)."""
        seq = base.seq + 1
        raw = _envelope(value, seq, self.writer)

        async def cas(site: str, kv: KeyValueBucket) -> int:
            last = base.revisions.get(site)
            if last is None:  # not read there (it did not answer): no base to compare with
                raise RevisionMismatch(f"{site} was not read")
            if last == 0:
                return await kv.create(key, raw)
            return await kv.update(key, raw, last=last)

        answers = await self._each(cas)
        took = {s: r for s, r in answers.items() if isinstance(r, int)}
        if len(took) >= self.writes:
            return Current(value, seq, self.writer, took, dict.fromkeys(took, raw))
        moved = any(
            isinstance(r, RevisionMismatch) and s in base.revisions for s, r in answers.items()
        )
        restored = await self._take_back(key, base, took)
        if moved and restored:
            raise RevisionMismatch(
                f"storage {self.bucket}/{key}: another writer changed the manifest; read it again"
            )
        error = self._short(list(answers), self.writes, f"writing {key}")
        error.landed = not restored
        raise error

    async def _take_back(self, key: str, base: Current, took: Mapping[str, int]) -> bool:
        """Restore ``base``'s value where a failed write landed; whether it was everywhere."""
        restored = True
        for site, revision in took.items():
            try:
                kv = await self._bucket(site)
                old = base.held.get(site)
                restore = old if old is not None else _envelope(None, 0, "")
                await kv.update(key, restore, last=revision)
            except (FabricUnavailable, RevisionMismatch) as exc:
                self._log.info("storage_manifest_not_taken_back", site=site, error=str(exc)[:200])
                restored = False
        return restored

    async def sync(self, key: str) -> int:
        """Copy the newest value of ``key`` to the answering sites that hold an older one (after
        a manifest site came back); how many copies were written."""
        current = await self.read(key)
        raw = None if current.seq == 0 else _envelope(current.value, current.seq, current.writer)
        copied = 0
        for site, held in current.held.items():
            if raw is None or held == raw:
                continue
            try:
                kv = await self._bucket(site)
                last = current.revisions[site]
                await (kv.create(key, raw) if last == 0 else kv.update(key, raw, last=last))
                copied += 1
            except (FabricUnavailable, RevisionMismatch):
                continue
        return copied

    async def keys(self) -> list[str]:
        """The keys any answering manifest site holds (tombstones included)."""

        async def listing(site: str, kv: KeyValueBucket) -> list[str]:
            return await kv.keys()

        answers = await self._each(listing)
        if len(answers) < self.reads:
            raise self._short(list(answers), self.reads, "listing objects")
        return sorted({k for keys in answers.values() if isinstance(keys, list) for k in keys})
