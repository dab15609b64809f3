"""Adapting each chunk's layout to what is measured: reads, link speed, the policy.

One :func:`adapt` pass probes every site (a timed read of a 64 KiB probe
fragment: latency and bandwidth of its link as seen from here), then picks
each chunk's layout: a chunk read at least ``hot_reads`` times since the
last pass is *hot*; a hot chunk with a fragment at a site slower than the
``latency_target`` (or any hot chunk, without a target) goes to
``hot_layout``, replicas on the fastest sites, the reader's own first; any
other chunk goes back to the policy's layout for its size. Each change is a
re-layout: the chunk is read, written afresh in the new layout beside the
old one, the manifest switched by compare-and-set, and only then the old
fragments collected, so the chunk is never less protected than its policy
says. Re-layouts are paced so that their bytes (read and written) stay
within ``relayout_share`` of the slowest involved link's measured bandwidth.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

import anyio

from diaspora.errors import FabricUnavailable, RevisionMismatch, StorageError
from diaspora.events import Relayout
from diaspora.storage._layout import Layout
from diaspora.storage._reads import read_chunk

if TYPE_CHECKING:
    from diaspora.storage._store import Storage

__all__ = ["AdaptReport", "adapt", "probe", "relayout"]

PROBE_KEY: Final = "probe.0"
PROBE_SIZE: Final = 64 * 1024


@dataclass(slots=True)
class AdaptReport:
    """What one adaptation pass measured and changed."""

    #: Seconds of the timed 64 KiB probe read, per site that answered.
    probe_s: dict[str, float] = field(default_factory=dict)
    #: Sites slower than the latency target (or not answering).
    slow: list[str] = field(default_factory=list)
    #: (object, chunk, old layout, new layout) of every chunk re-laid out.
    changed: list[tuple[str, int, str, str]] = field(default_factory=list)
    #: Bytes read and written by the re-layouts.
    bytes_moved: int = 0
    #: Seconds the re-layouts took, pacing included.
    seconds: float = 0.0
    #: The pace they were held to (bytes/s; ``None``: nothing to move).
    rate_limit: float | None = None


async def probe(store: Storage, report: AdaptReport) -> None:
    """Time a read of each site's probe fragment (written first if missing)."""

    async def one(site: str) -> None:
        try:
            if await store.sites.frag[site].get(PROBE_KEY) is None:
                await store.sites.put(site, PROBE_KEY, os.urandom(PROBE_SIZE))
            started = time.monotonic()
            await store.sites.frag[site].get(PROBE_KEY)
        except FabricUnavailable as exc:
            await store.sites.failed(site, exc)
            return
        seconds = time.monotonic() - started
        health = store.sites.health[site]
        health.latency, health.bandwidth = seconds, PROBE_SIZE / max(seconds, 1e-6)
        report.probe_s[site] = seconds

    async with anyio.create_task_group() as tg:
        for site in store.sites.names:
            tg.start_soon(one, site)
    target = store.policy.latency_target
    report.slow = sorted(
        s
        for s in store.sites.names
        if s not in report.probe_s or (target is not None and report.probe_s[s] > target)
    )


async def relayout(
    store: Storage,
    name: str,
    index: int,
    layout: Layout,
    *,
    avoid: frozenset[str] = frozenset(),
    reason: str = "asked",
) -> int:
    """Rewrite chunk ``index`` of ``name`` in ``layout``; the bytes moved (0: it changed meanwhile).

    Write-new, compare-and-set the manifest, collect-old: until the switch
    the old layout is whole; after it, the new one is.
    """
    from diaspora.storage._store import token_of

    manifest = await store.stat(name)
    chunk = manifest.chunks[index]
    got = await read_chunk(store.sites, chunk, f"storage {store.bucket}/{name}")
    new = await store.write_chunk(
        token_of(name), index, got.data, layout, avoid=avoid, start=0, prefer=store.here
    )
    chunks = list(manifest.chunks)
    chunks[index] = new
    try:
        await store.commit(replace(manifest, chunks=tuple(chunks)), manifest)
    except RevisionMismatch:  # written meanwhile: drop what we wrote, try at the next pass
        await store.collect(list(new.fragments))
        return 0
    await store.collect(list(chunk.fragments))
    moved = chunk.size + new.stored
    event = Relayout(
        name=store.bucket,
        object=name,
        chunk=index,
        old=str(chunk.layout),
        new=str(layout),
        reason=reason,
        moved_bytes=moved,
    )
    await store.fabric.emit(event)
    return moved


async def adapt(store: Storage) -> AdaptReport:
    """One pass: probe the sites, re-lay out the chunks the policy now wants laid out otherwise."""
    policy = store.policy
    report = AdaptReport()
    await probe(store, report)
    slow = frozenset(report.slow)
    reads, store.reads = store.reads, type(store.reads)()
    plan: list[tuple[str, int, Layout, str]] = []
    for name in await store.names():
        manifest = await store.stat(name)
        for chunk in manifest.chunks:
            hot = policy.hot_reads > 0 and reads[(name, chunk.index)] >= policy.hot_reads
            sites = {f.site for f in chunk.fragments}
            if hot and (policy.latency_target is None or sites & slow):
                wanted = policy.hot
                behind = sorted(sites & slow)
                reason = f"hot, behind slow {', '.join(behind)}" if behind else "hot"
            elif hot:
                continue  # hot, and every holder within the target: as it is
            else:
                wanted, reason = policy.layout_for(chunk.size), "policy"
            if wanted != chunk.layout or (wanted == policy.hot and hot and sites & slow):
                plan.append((name, chunk.index, wanted, reason))
    if not plan:
        return report
    fast = [s for s in store.sites.names if s not in slow and store.sites.health[s].bandwidth]
    if not fast:
        raise StorageError(f"storage {store.bucket}: no site answered the probe; nothing moved")
    report.rate_limit = policy.relayout_share * min(
        store.sites.health[s].bandwidth or 0.0 for s in fast
    )
    started = time.monotonic()
    for name, index, layout, reason in plan:
        old = str((await store.stat(name)).chunks[index].layout)
        avoid = slow if layout == policy.hot else frozenset()
        moved = await relayout(store, name, index, layout, avoid=avoid, reason=reason)
        if moved:
            report.changed.append((name, index, old, str(layout)))
            report.bytes_moved += moved
        # pace: never ahead of rate_limit bytes per second since the pass began
        ahead = report.bytes_moved / report.rate_limit - (time.monotonic() - started)
        if ahead > 0:
            await anyio.sleep(ahead)
    report.seconds = time.monotonic() - started
    return report
