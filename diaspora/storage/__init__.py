"""Resilient storage: objects cut in chunks, each replicated or erasure-coded over sites.

A :class:`Storage` bucket spreads every chunk of an object over the sites
of a hierarchical fabric (each its own JetStream domain): ``rep:n`` keeps
``n`` copies at distinct sites, ``rs:k+m`` keeps ``k + m`` fragments of
which any ``k`` give the chunk back. A manifest per object, in the KV of
``2 * lose + 1`` sites (a majority quorum, compare-and-set at each), says
where everything is; every
fragment is checked against its SHA-256 when read. Reads ask the fastest
sites first, ``k + 1`` at a time (late binding); repair rebuilds lost or
corrupt fragments. See docs/storage.md.
"""

from diaspora.storage._codec import BACKENDS, Codec, available_backends, codec
from diaspora.storage._gf256 import GF256Codec
from diaspora.storage._health import SiteHealth
from diaspora.storage._layout import ChunkInfo, Fragment, Layout, Manifest, place, tolerated
from diaspora.storage._policy import Policy
from diaspora.storage._repair import RepairReport
from diaspora.storage._spec import StorageSpec
from diaspora.storage._store import Storage

__all__ = [
    "BACKENDS",
    "ChunkInfo",
    "Codec",
    "Fragment",
    "GF256Codec",
    "Layout",
    "Manifest",
    "Policy",
    "RepairReport",
    "SiteHealth",
    "Storage",
    "StorageSpec",
    "available_backends",
    "codec",
    "place",
    "tolerated",
]
