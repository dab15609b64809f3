"""Reading one chunk: fastest sites first, late binding, every fragment checked.

A chunk needs ``k`` intact fragments (one copy for ``rep``). The reader asks
the ``k + 1`` sites measured fastest at once and decodes from the first
``k`` fragments whose length and SHA-256 match the manifest (EC-Cache's
late binding: one slow or lost site does not hold the read up). A fragment
that is missing, corrupt or whose site does not answer is replaced by a
request to the next site. Missing and corrupt fragments at sites that
answer are returned as damaged, for the caller to repair; a corrupt
fragment is never decoded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

import anyio

from diaspora.errors import FabricUnavailable, FragmentsMissing, StorageError
from diaspora.storage._codec import codec
from diaspora.storage._layout import ChunkInfo, Fragment
from diaspora.storage._siteset import SiteSet

__all__ = ["ChunkRead", "decode_chunk", "read_chunk"]

#: The shortest wait before a replicated chunk's spare copy is asked.
_MIN_HEDGE: Final = 0.005


@dataclass(slots=True)
class ChunkRead:
    """A chunk's bytes and what was wrong with the fragments tried on the way."""

    data: bytes
    #: Fragments missing or corrupt at sites that answered: to repair.
    damaged: list[Fragment] = field(default_factory=list)
    #: (fragment, why) of every fragment that could not be used.
    problems: list[tuple[Fragment, str]] = field(default_factory=list)


def check(fragment: Fragment, data: bytes | None) -> str | None:
    """Why ``data`` is not fragment ``fragment`` (``None``: it is)."""
    if data is None:
        return "missing"
    if len(data) != fragment.length or hashlib.sha256(data).hexdigest() != fragment.sha256:
        return "corrupt (checksum mismatch)"
    return None


def decode_chunk(chunk: ChunkInfo, good: dict[int, bytes], where: str) -> bytes:
    """The chunk from ``k`` intact fragments, its SHA-256 checked."""
    if chunk.layout.kind == "rep":
        data = next(iter(good.values()))
    else:
        chosen = dict(sorted(good.items())[: chunk.layout.k])
        data = codec(chunk.layout.k, chunk.layout.m, chunk.codec).decode(chosen, chunk.size)
    if hashlib.sha256(data).hexdigest() != chunk.sha256:
        raise StorageError(f"{where} chunk {chunk.index}: decoded bytes fail their SHA-256")
    return data


async def read_chunk(sites: SiteSet, chunk: ChunkInfo, where: str, *, extra: int = 1) -> ChunkRead:
    """The bytes of ``chunk``, asking ``k + extra`` fragments at once and using the first ``k``.

    A replicated chunk asks one copy, and the next fastest (``extra`` of
    them) only if the first is not back within twice its site's measured
    latency (a hedged read: a whole copy is ``k`` times a fragment).

    Raises :class:`~diaspora.errors.FragmentsMissing` naming every fragment
    that could not be used (chunk, index, site, why) when fewer than ``k``
    are intact.
    """
    need = chunk.layout.k if chunk.layout.kind == "rs" else 1
    ranked = {s: i for i, s in enumerate(sites.ranked({f.site for f in chunk.fragments}))}
    pending = iter(sorted(chunk.fragments, key=lambda f: (ranked[f.site], f.index)))
    good: dict[int, bytes] = {}
    out = ChunkRead(b"")

    async with anyio.create_task_group() as tg:

        def launch() -> Fragment | None:
            fragment = next(pending, None)
            if fragment is not None:
                tg.start_soon(fetch, fragment)
            return fragment

        async def hedge(spares: int) -> None:
            first = launch()
            latency = sites.health[first.site].latency if first is not None else None
            for _ in range(spares):
                await anyio.sleep(max(_MIN_HEDGE, 2 * (latency or 0.0)))
                launch()

        async def fetch(fragment: Fragment) -> None:
            try:
                data = await sites.get(fragment.site, fragment.key)
            except FabricUnavailable:
                out.problems.append((fragment, "site did not answer"))
                launch()
                return
            why = check(fragment, data)
            if why is not None:
                out.problems.append((fragment, why))
                out.damaged.append(fragment)
                launch()
                return
            assert data is not None
            good[fragment.index] = data
            if len(good) >= need:
                tg.cancel_scope.cancel()

        if chunk.layout.kind == "rep":
            tg.start_soon(hedge, extra)
        else:
            for _ in range(need + extra):
                launch()
    if len(good) < need:
        missing = [(chunk.index, f.index, f.site, why) for f, why in out.problems]
        listed = "; ".join(f"fragment {j} at site {s!r}: {why}" for _, j, s, why in missing)
        raise FragmentsMissing(
            f"{where} chunk {chunk.index} ({chunk.layout}): {len(good)} intact fragments, "
            f"needs {need}; {listed}. Bring those sites back, then run repair",
            missing=missing,
        )
    out.data = decode_chunk(chunk, good, where)
    return out
