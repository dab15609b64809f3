"""The resilient storage bucket: put, get, stat, delete of chunked objects over sites."""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, Final, Self

import anyio
import anyio.abc

from diaspora.errors import (
    ConfigError,
    FabricUnavailable,
    FragmentsMissing,
    ManifestUnavailable,
    NotStored,
    ObjectChanged,
    PlacementError,
    RevisionMismatch,
    StorageError,
)
from diaspora.fabric import Fabric, Sites
from diaspora.log import get_logger
from diaspora.storage import _adapt, _repair
from diaspora.storage._codec import codec
from diaspora.storage._input import Source, chunked
from diaspora.storage._layout import ChunkInfo, Fragment, Layout, Manifest, place
from diaspora.storage._manifests import Current, ManifestSites, metas
from diaspora.storage._policy import Policy
from diaspora.storage._reads import read_chunk
from diaspora.storage._siteset import SiteSet
from diaspora.storage._spec import StorageSpec

__all__ = ["Storage"]

_BUCKET: Final = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    if not name:
        raise ConfigError("storage: an object name must not be empty")
    return "o." + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def token_of(name: str) -> str:
    """The subject token of an object's fragment keys."""
    return hashlib.sha256(name.encode()).hexdigest()[:24]


async def _first_error(errors: list[BaseException], tg: anyio.abc.TaskGroup, work: Any) -> None:
    """Await ``work``; on failure keep its exception and cancel its siblings."""
    try:
        await work
    except Exception as exc:
        errors.append(exc)
        tg.cancel_scope.cancel()


def fragments_of(layout: Layout, data: bytes, backend: str) -> tuple[list[bytes], str]:
    """The fragments of one chunk and the codec that made them (``"copy"`` for replicas)."""
    if layout.kind == "rep":
        return [data] * layout.fragments, "copy"
    rs = codec(layout.k, layout.m, backend)
    return rs.encode(data), rs.name


class Storage:
    """Objects cut in chunks, each chunk replicated (``rep:n``) or erasure-coded (``rs:k+m``)
    over sites, with compare-and-set manifests at ``2 * lose + 1`` sites from ``meta`` on
    (a majority quorum: they stay readable and writable with ``lose`` of those sites lost).

    ``sites`` maps each site name to its JetStream domain (or pass a running
    :class:`~diaspora.fabric.Sites`); ``fabric`` is connected to site ``here``
    (reads go there first). Enter with ``async with``.

    >>> import anyio
    >>> from diaspora.fabric import Sites, SiteSpec
    >>> async def main() -> None:
    ...     specs = [SiteSpec("hub", domain="hub")] + [
    ...         SiteSpec(s, domain=s, parent="hub") for s in ("a", "b")]
    ...     async with Sites(specs) as sites, sites.fabric("hub") as fabric:
    ...         policy = Policy(layout="rs:2+1", chunk_size=1024, small=0)
    ...         async with Storage(fabric, sites, bucket="demo", policy=policy) as store:
    ...             await store.put("greeting", b"hello " * 1000)
    ...             print(len(await store.get("greeting")), (await store.stat("greeting")).size)
    >>> anyio.run(main)
    6000 6000
    """

    def __init__(
        self,
        fabric: Fabric,
        sites: Sites | Mapping[str, str],
        *,
        bucket: str = "default",
        policy: Policy | None = None,
        meta: str | None = None,
        here: str | None = None,
        timeout: float | None = None,
        parallel: int = 4,
    ) -> None:
        if not isinstance(bucket, str) or not _BUCKET.match(bucket):
            raise ConfigError(
                f"storage bucket {bucket!r}: use letters, digits, '-' or '_' (it names a KV "
                "bucket and a stream per site)"
            )
        domains = {s.name: s.domain for s in sites} if isinstance(sites, Sites) else dict(sites)
        if isinstance(sites, Sites):
            here = here or next((s.name for s in sites if s.url in fabric.urls), None)
        self.bucket = bucket
        self.policy = policy or Policy()
        self.meta = meta or (here if here is not None else next(iter(domains), ""))
        if self.meta not in domains:
            raise ConfigError(f"storage bucket {bucket!r}: meta={self.meta!r} is not a site")
        self.fabric = fabric
        self.sites = SiteSet(fabric, domains, bucket, here=here, timeout=timeout)
        #: The manifest sites (fixed when opened: the quorum must not change under readers).
        self.manifests = ManifestSites(
            fabric,
            domains,
            bucket,
            metas(list(domains), self.meta, lose=self.policy.lose),
            self.sites.health,
        )
        #: The site the fabric is connected to (where this client reads from).
        self.here = here
        self._domains = domains
        self._parallel = max(1, parallel)
        self._open = False
        #: reads of each (object, chunk) since the last adaptation pass
        self.reads: Counter[tuple[str, int]] = Counter()
        self._log = get_logger(storage=bucket)

    async def __aenter__(self) -> Self:
        self._open = True
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False

    @property
    def spec(self) -> StorageSpec:
        """This bucket as a :class:`StorageSpec` (sites, bucket, policy, meta)."""
        return StorageSpec(self._domains, self.bucket, self.policy, self.meta)

    def _check_open(self) -> None:
        if not self._open:
            raise StorageError(f"storage bucket {self.bucket!r} is not open: use `async with`")

    # -- manifests ------------------------------------------------------------------

    def _decode(self, current: Current, name: str) -> Manifest | None:
        if current.value is None:
            return None
        manifest = Manifest.decode(current.value, current.seq, f"storage {self.bucket}/{name}")
        return replace(manifest, current=current)

    async def _manifest(self, name: str) -> Manifest | None:
        self._check_open()
        return self._decode(await self.manifests.read(_key(name)), name)

    async def stat(self, name: str) -> Manifest:
        """The manifest of ``name``: size, SHA-256, chunks, their layouts and fragments.

        Raises :class:`~diaspora.errors.NotStored` when there is no such object.
        """
        manifest = await self._manifest(name)
        if manifest is None:
            raise NotStored(f"storage {self.bucket}/{name}: no such object (never put, or deleted)")
        return manifest

    async def names(self) -> list[str]:
        """The names of the objects stored in the bucket."""
        self._check_open()
        out = []
        for key in await self.manifests.keys():
            if key.startswith("o."):
                raw = key[2:]
                name = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
                if (await self.manifests.read(key)).value is not None:  # not a tombstone
                    out.append(name)
        return sorted(out)

    async def commit(self, manifest: Manifest, old: Manifest | None) -> Manifest:
        """Write ``manifest`` over ``old`` by compare-and-set at a quorum of the manifest sites
        (:class:`RevisionMismatch`: moved; :class:`ManifestUnavailable`: too few answer)."""
        value = manifest.encode()
        if len(value) > self.fabric.inline_limit:
            raise StorageError(
                f"storage {self.bucket}/{manifest.name}: its manifest is {len(value)} bytes, over "
                f"the KV limit {self.fabric.inline_limit}; use a larger chunk_size"
            )
        key = _key(manifest.name)
        self._check_open()
        base = old.current if old is not None else None
        if base is None:
            base = await self.manifests.read(key)
            if old is None and base.value is not None:
                raise RevisionMismatch(f"storage {self.bucket}/{manifest.name}: created meanwhile")
        now = await self.manifests.write(key, value, base)
        decoded = self._decode(now, manifest.name)
        assert decoded is not None
        return decoded

    async def collect(self, fragments: list[Fragment]) -> None:
        """Delete ``fragments`` (a site that does not answer keeps them: orphans)."""
        patterns = {(f.site, f.key) for f in fragments}
        with anyio.CancelScope(shield=True):
            for site, key in sorted(patterns):
                await self.sites.delete(site, key)

    # -- writing --------------------------------------------------------------------

    async def write_chunk(
        self,
        token: str,
        index: int,
        data: bytes,
        layout: Layout,
        *,
        avoid: frozenset[str] = frozenset(),
        start: int | None = None,
        prefer: str | None = None,
    ) -> ChunkInfo:
        """Encode ``data`` and store its fragments on the fastest sites that answer (round
        robin from ``start``, default the chunk's index; never on ``avoid`` if others answer)."""
        frags, made_by = fragments_of(layout, data, self.policy.codec)
        sha = hashlib.sha256(data).hexdigest()
        for _ in range(len(self.sites.names)):
            gen = uuid.uuid4().hex[:12]
            up = [s for s in self.sites.up() if s not in avoid] or self.sites.up()
            if prefer in up:  # near the readers: their own site first
                up = [prefer, *(s for s in up if s != prefer)]
            first = index if start is None else start
            try:
                try:
                    chosen = place(layout, up, lose=self.policy.lose, start=first)
                except PlacementError:
                    if not avoid:
                        raise
                    up = self.sites.up()  # too few without the avoided sites: use them too
                    chosen = place(layout, up, lose=self.policy.lose, start=first)
            except PlacementError as exc:
                down = [s for s in self.sites.names if s not in up]
                raise PlacementError(f"{exc} (sites down: {', '.join(down) or 'none'})") from None
            stored = [
                Fragment(
                    j, site, f"{token}.{gen}.{index}.{j}", len(f), hashlib.sha256(f).hexdigest()
                )
                for j, (site, f) in enumerate(zip(chosen, frags, strict=True))
            ]
            failed: list[str] = []
            async with anyio.create_task_group() as tg:
                for fragment in stored:
                    tg.start_soon(self._put_one, fragment, frags[fragment.index], failed)
            if not failed:
                return ChunkInfo(index, len(data), sha, layout, made_by, tuple(stored))
            self._log.info("storage_chunk_retry", chunk=index, failed=sorted(set(failed)))
            await self.collect([f for f in stored if f.site not in failed])
        raise PlacementError(f"storage {self.bucket}: chunk {index}: no placement succeeded")

    async def _put_one(self, fragment: Fragment, data: bytes, failed: list[str]) -> None:
        try:
            await self.sites.put(fragment.site, fragment.key, data)
        except FabricUnavailable:
            failed.append(fragment.site)

    async def put(self, name: str, data: Source, *, layout: str | None = None) -> Manifest:
        """Store ``data`` (bytes, a binary file, an iterable or async iterable of bytes) as ``name``

        Chunks are written fresh and the manifest is switched by
        compare-and-set; only then are the replaced object's fragments
        deleted, so a reader sees the old object or the new one, whole.
        ``layout`` forces every chunk's layout (default: the policy's).
        """
        key = _key(name)
        forced = Layout.parse(layout) if layout is not None else None
        token, write = token_of(name), uuid.uuid4().hex[:12]
        chunks: dict[int, ChunkInfo] = {}
        whole = hashlib.sha256()
        size = 0
        limiter = anyio.Semaphore(self._parallel)
        errors: list[BaseException] = []
        try:
            async with anyio.create_task_group() as tg:
                index = 0
                async for piece in chunked(data, self.policy.chunk_size):
                    whole.update(piece)
                    size += len(piece)
                    await limiter.acquire()
                    chosen = forced or self.policy.layout_for(len(piece))

                    async def one(i: int, piece: bytes, chosen: Layout) -> None:
                        try:
                            chunks[i] = await self.write_chunk(token, i, piece, chosen)
                        finally:
                            limiter.release()

                    tg.start_soon(_first_error, errors, tg, one(index, piece, chosen))
                    index += 1
            if errors:
                raise errors[0]
            old = await self._manifest(name)
            manifest = Manifest(
                name, size, whole.hexdigest(), self.policy.chunk_size, write,
                tuple(chunks[i] for i in range(len(chunks))), time.time(),
            )  # fmt: skip
            while True:
                try:
                    committed = await self.commit(manifest, old)
                    break
                except RevisionMismatch:  # another writer won: the last write wins
                    old = await self._manifest(name)
        except BaseException as exc:
            if not (isinstance(exc, ManifestUnavailable) and exc.landed):  # else a reader may
                await self.collect([f for c in chunks.values() for f in c.fragments])  # use them
            raise
        if old is not None:
            await self.collect([f for c in old.chunks for f in c.fragments])
        self._log.info("storage_put", key=key, size=size, chunks=len(chunks))
        return committed

    async def delete(self, name: str) -> None:
        """Delete ``name`` and its fragments (a missing object is not an error)."""
        while True:
            old = await self._manifest(name)
            if old is None or old.current is None:
                return
            try:
                await self.manifests.write(_key(name), None, old.current)  # a tombstone
                break
            except RevisionMismatch:
                continue
        await self.collect([f for c in old.chunks for f in c.fragments])

    # -- reading --------------------------------------------------------------------

    async def read(self, manifest: Manifest, index: int) -> tuple[Manifest, bytes]:
        """Chunk ``index`` of ``manifest``'s object; re-reads the manifest if its layout moved."""
        where = f"storage {self.bucket}/{manifest.name}"
        while True:
            chunk = manifest.chunks[index]
            try:
                got = await read_chunk(self.sites, chunk, where)
                break
            except FragmentsMissing:
                now = await self._manifest(manifest.name)
                if now is None or now.write != manifest.write:
                    raise ObjectChanged(
                        f"{where}: overwritten or deleted during the read"
                    ) from None
                if now.revision == manifest.revision:
                    raise
                manifest = now  # a re-layout or repair moved fragments: read the new layout
        self.reads[(manifest.name, index)] += 1
        if got.problems:
            await _repair.report_damage(self, manifest.name, chunk, got.problems)
        if got.damaged:
            await _repair.mend(self, manifest.name, chunk, got.data, got.damaged)
        return manifest, got.data

    async def _read_into(self, manifest: Manifest, index: int, out: dict[int, bytes]) -> None:
        out[index] = (await self.read(manifest, index))[1]

    async def chunks(self, name: str) -> AsyncIterator[bytes]:
        """The chunks of ``name`` in order, ``parallel`` read ahead (a streaming get).

        Raises :class:`~diaspora.errors.ObjectChanged` if ``name`` is
        overwritten meanwhile, :class:`~diaspora.errors.FragmentsMissing`
        (naming fragments and sites) when too many sites are lost.
        """
        manifest = await self.stat(name)
        whole = hashlib.sha256()
        for start in range(0, len(manifest.chunks), self._parallel):
            window: dict[int, bytes] = {}
            errors: list[BaseException] = []
            async with anyio.create_task_group() as tg:
                for i in range(start, min(start + self._parallel, len(manifest.chunks))):
                    tg.start_soon(_first_error, errors, tg, self._read_into(manifest, i, window))
            if errors:
                raise errors[0]
            for i in sorted(window):
                whole.update(window[i])
                yield window[i]
        if whole.hexdigest() != manifest.sha256:
            raise StorageError(f"storage {self.bucket}/{name}: the object fails its SHA-256")

    async def get(self, name: str) -> bytes:
        """The bytes of ``name`` (read again from the start if it is overwritten meanwhile)."""
        for _ in range(3):
            try:
                return b"".join([c async for c in self.chunks(name)])
            except ObjectChanged:
                continue
        raise ObjectChanged(f"storage {self.bucket}/{name}: overwritten during three reads")

    async def adapt(self) -> _adapt.AdaptReport:
        """One adaptation pass (probe sites, re-lay out chunks the policy now wants changed)."""
        return await _adapt.adapt(self)

    async def sweep(self, *, min_age: float = 600.0) -> int:
        """Delete the orphan fragments (named by no manifest) older than ``min_age`` seconds."""
        return await _repair.sweep(self, min_age)

    async def repair(self, name: str | None = None, *, move: bool = False) -> _repair.RepairReport:
        """Check every fragment of ``name`` (default: all objects) and rebuild the lost or corrupt
        ones; with ``move``, fragments of sites that do not answer are rebuilt on other sites."""
        return await _repair.repair(self, name, move=move)
