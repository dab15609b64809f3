"""Repair: rebuild the fragments that are lost or corrupt, from the ones still intact.

:func:`mend` rewrites the damaged fragments a read found, from the chunk it
just decoded. :func:`repair` reads every fragment of every chunk (a scrub),
and rebuilds each missing or corrupt one at its own site; with ``move`` a
fragment whose site does not answer is rebuilt on another site (a site
replaced, or gone for good) and the manifest switched by compare-and-set,
keeping the policy's loss tolerance.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import anyio

from diaspora.errors import FabricUnavailable, RevisionMismatch
from diaspora.events import DegradedRead, FragmentCorrupt, FragmentRepaired, RepairDone
from diaspora.storage._layout import ChunkInfo, Fragment, tolerated
from diaspora.storage._reads import check, decode_chunk

if TYPE_CHECKING:
    from diaspora.storage._store import Storage

__all__ = ["RepairReport", "mend", "repair", "report_damage", "sweep"]

_NO_ANSWER = "site did not answer"


@dataclass(slots=True)
class RepairReport:
    """What a repair pass found and did."""

    objects: int = 0
    chunks: int = 0
    #: Fragments rewritten (at their own site, or moved).
    rebuilt: int = 0
    #: Fragments rebuilt on another site than the one that lost them.
    moved: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    #: (object, chunk, fragment, site) left as they are: their site does not answer.
    waiting: list[tuple[str, int, int, str]] = field(default_factory=list)
    #: (object, chunk): too few intact fragments to rebuild from.
    lost: list[tuple[str, int]] = field(default_factory=list)
    #: Manifest copies written to manifest sites that held an older one (or none).
    manifests: int = 0


async def report_damage(
    store: Storage, name: str, chunk: ChunkInfo, problems: list[tuple[Fragment, str]]
) -> None:
    """The events of a read that had to go around unusable fragments."""
    why = "; ".join(f"{f.index}@{f.site}: {reason}" for f, reason in problems)
    await store.fabric.emit(
        DegradedRead(
            name=store.bucket, object=name, chunk=chunk.index, unusable=len(problems), why=why
        )
    )
    for fragment, reason in problems:
        if reason.startswith("corrupt"):
            await _corrupt(store, name, chunk, fragment)


async def _corrupt(store: Storage, name: str, chunk: ChunkInfo, fragment: Fragment) -> None:
    event = FragmentCorrupt(
        name=store.bucket,
        object=name,
        chunk=chunk.index,
        fragment=fragment.index,
        site=fragment.site,
    )
    await store.fabric.emit(event)


async def _repaired(store: Storage, name: str, chunk: int, index: int, site: str, how: str) -> None:
    event = FragmentRepaired(
        name=store.bucket, object=name, chunk=chunk, fragment=index, site=site, how=how
    )
    await store.fabric.emit(event)


async def mend(
    store: Storage, name: str, chunk: ChunkInfo, data: bytes, damaged: list[Fragment]
) -> int:
    """Rewrite ``damaged`` fragments of ``chunk`` from its decoded bytes; the bytes written."""
    from diaspora.storage._store import fragments_of

    frags, _ = fragments_of(chunk.layout, data, chunk.codec)
    written = 0
    for fragment in damaged:
        new = frags[fragment.index]
        if hashlib.sha256(new).hexdigest() != fragment.sha256:
            continue  # the codec does not re-encode to the same bytes: leave it to repair
        try:
            await store.sites.put(fragment.site, fragment.key, new)
        except FabricUnavailable:
            continue
        written += len(new)
        await _repaired(store, name, chunk.index, fragment.index, fragment.site, "mended")
    return written


async def _survey(store: Storage, chunk: ChunkInfo) -> dict[int, tuple[bytes | None, str | None]]:
    """Every fragment of ``chunk``: its bytes if intact, and why not otherwise."""
    found: dict[int, tuple[bytes | None, str | None]] = {}

    async def one(fragment: Fragment) -> None:
        try:
            data = await store.sites.get(fragment.site, fragment.key)
        except FabricUnavailable:
            found[fragment.index] = (None, _NO_ANSWER)
            return
        why = check(fragment, data)
        found[fragment.index] = (data if why is None else None, why)

    async with anyio.create_task_group() as tg:
        for fragment in chunk.fragments:
            tg.start_soon(one, fragment)
    return found


def _new_site(store: Storage, chunk: ChunkInfo, fragment: Fragment) -> str | None:
    """Another answering site for ``fragment`` keeping the policy's loss tolerance, if any."""
    others = [f.site for f in chunk.fragments if f.index != fragment.index]
    holders = set(others)
    for site in sorted(store.sites.up(), key=lambda s: (s in holders, others.count(s))):
        if site != fragment.site and tolerated([*others, site], chunk.layout) >= store.policy.lose:
            return site
    return None


async def _repair_chunk(
    store: Storage, name: str, chunk: ChunkInfo, move: bool, report: RepairReport
) -> ChunkInfo:
    found = await _survey(store, chunk)
    good = {j: data for j, (data, _) in found.items() if data is not None}
    bad = [f for f in chunk.fragments if found[f.index][1] is not None]
    for fragment in bad:
        if (found[fragment.index][1] or "").startswith("corrupt"):
            await _corrupt(store, name, chunk, fragment)
    report.chunks += 1
    report.bytes_read += sum(len(d) for d in good.values())
    if not bad:
        return chunk
    need = chunk.layout.k if chunk.layout.kind == "rs" else 1
    if len(good) < need:
        report.lost.append((name, chunk.index))
        return chunk
    from diaspora.storage._store import fragments_of

    data = decode_chunk(chunk, good, f"storage {store.bucket}/{name}")
    frags, _ = fragments_of(chunk.layout, data, chunk.codec)
    current = list(chunk.fragments)
    for fragment in bad:
        target = fragment.site
        if found[fragment.index][1] == _NO_ANSWER:
            elsewhere = None
            if move:
                elsewhere = _new_site(store, replace(chunk, fragments=tuple(current)), fragment)
            if elsewhere is None:
                report.waiting.append((name, chunk.index, fragment.index, fragment.site))
                continue
            target = elsewhere
        new = frags[fragment.index]
        try:
            await store.sites.put(target, fragment.key, new)
        except FabricUnavailable:
            report.waiting.append((name, chunk.index, fragment.index, target))
            continue
        report.rebuilt += 1
        report.bytes_written += len(new)
        how = "rebuilt" if target == fragment.site else "moved"
        await _repaired(store, name, chunk.index, fragment.index, target, how)
        if target != fragment.site:
            report.moved += 1
            current[current.index(fragment)] = Fragment(
                fragment.index, target, fragment.key, len(new), hashlib.sha256(new).hexdigest()
            )
    return replace(chunk, fragments=tuple(current))


async def repair(store: Storage, name: str | None, *, move: bool) -> RepairReport:
    """Scrub and rebuild the fragments of ``name`` (default: every object of the bucket)."""
    from diaspora.storage._store import _key as key_of

    started = time.monotonic()
    report = RepairReport()
    for site in store.sites.frag.values():
        site.forget()  # a site replaced since: its stream is found missing at once
    for each in [name] if name is not None else await store.names():
        for _ in range(5):
            manifest = await store._manifest(each)
            if manifest is None:
                break
            chunks = [await _repair_chunk(store, each, c, move, report) for c in manifest.chunks]
            if all(a is b for a, b in zip(chunks, manifest.chunks, strict=True)):
                break
            try:
                await store.commit(replace(manifest, chunks=tuple(chunks)), manifest)
                break
            except RevisionMismatch:  # written meanwhile: survey the new manifest
                continue
        report.manifests += await store.manifests.sync(key_of(each))
        report.objects += 1
    report.seconds = time.monotonic() - started
    done = RepairDone(
        name=store.bucket,
        objects=report.objects,
        rebuilt=report.rebuilt,
        moved=report.moved,
        bytes_read=report.bytes_read,
        bytes_written=report.bytes_written,
        seconds=round(report.seconds, 6),
        waiting=len(report.waiting),
        lost=len(report.lost),
    )
    await store.fabric.emit(done)
    return report


async def sweep(store: Storage, min_age: float) -> int:
    """Delete fragments no manifest names, stored over ``min_age`` seconds ago; how many.

    They are left behind at a site that did not answer when they were to be
    collected, or by a write that failed midway. ``min_age`` must exceed the
    longest write: a write's fragments are named by no manifest until it ends.
    """
    from diaspora.storage._adapt import PROBE_KEY

    named: set[tuple[str, str]] = set()
    for name in await store.names():
        manifest = await store._manifest(name)
        if manifest is not None:
            named |= {(f.site, f.key) for c in manifest.chunks for f in c.fragments}
    deleted = 0
    for site in store.sites.up():
        try:
            keys = await store.sites.keys(site)
            for key in keys:
                if key == PROBE_KEY or (site, key) in named:
                    continue
                at = await store.sites.frag[site].stored_at(key)
                if at is not None and time.time() - at >= min_age:
                    deleted += await store.sites.delete(site, key)
        except FabricUnavailable:
            continue
    store._log.info("storage_swept", deleted=deleted)
    return deleted
