"""What a storage bucket promises: its layouts, the sites it may lose, its overhead budget.

>>> p = Policy(layout="rs:4+2", lose=1)
>>> str(p.layout_for(4 << 20)), str(p.layout_for(1000))
('rs:4+2', 'rep:2')
>>> Policy(layout="rs:4+2", overhead=1.4)
Traceback (most recent call last):
diaspora.errors.ConfigError: storage policy: layout rs:4+2 stores 1.50 bytes per byte, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diaspora.errors import ConfigError
from diaspora.storage._layout import Layout

__all__ = ["Policy"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Policy:
    """A storage bucket's promises and how it adapts each chunk's layout to them.

    - ``layout``: for chunks of at least ``small`` bytes (``rs:k+m`` or ``rep:n``);
    - ``small_layout``: for smaller chunks (replicas: coding a tiny chunk saves
      nothing; default ``rep:<lose + 1>``);
    - ``lose``: how many sites may be lost with every object still readable; a
      write that cannot be placed so is refused (:class:`~diaspora.errors.PlacementError`);
    - ``overhead``: the budget of bytes stored per byte of data (``None``: none);
    - ``chunk_size``: bytes per chunk (fragments are ``chunk_size / k``);
    - ``codec``: the erasure-code backend (``"auto"``: ISA-L if pyeclib loads);
    - ``hot_reads``: reads of a chunk (within one adaptation pass) that make it hot,
      so that :meth:`Storage.adapt` replicates it near its readers (0: never);
    - ``hot_layout``: the layout of hot chunks (default ``rep:<lose + 1>``);
    - ``latency_target``: seconds; a chunk whose fragments are at a site slower than
      this counts as hot from one read on;
    - ``relayout_share``: the share of the slowest involved link's measured bandwidth
      a background re-layout may use.
    """

    layout: str = "rs:4+2"
    small_layout: str = ""
    small: int = 1 * MiB
    lose: int = 1
    overhead: float | None = None
    chunk_size: int = 4 * MiB
    codec: str = "auto"
    hot_reads: int = 0
    hot_layout: str = ""
    latency_target: float | None = None
    relayout_share: float = 0.05
    _parsed: dict[str, Layout] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("layout", "small_layout", "hot_layout"):
            layout = Layout.parse(getattr(self, name) or f"rep:{self.lose + 1}")
            self._parsed[name] = layout
            if self.lose > layout.m:
                raise ConfigError(
                    f"storage policy: {name} {layout} survives the loss of {layout.m} "
                    f"fragments, fewer than lose={self.lose} sites; add parity or copies"
                )
            if (
                name != "hot_layout"
                and self.overhead is not None
                and (layout.overhead > self.overhead + 1e-9)
            ):
                raise ConfigError(
                    f"storage policy: {name} {layout} stores {layout.overhead:.2f} bytes per "
                    f"byte, over the overhead budget {self.overhead}; raise the budget or "
                    "use a wider code (more data fragments per parity)"
                )
        if self.chunk_size < 1 or self.small < 0 or self.lose < 0:
            raise ConfigError("storage policy: chunk_size >= 1, small >= 0 and lose >= 0")
        if not 0 < self.relayout_share <= 1:
            raise ConfigError(f"storage policy: relayout_share={self.relayout_share} not in (0, 1]")

    def layout_for(self, size: int) -> Layout:
        """The layout a new chunk of ``size`` bytes is written with."""
        return self._parsed["small_layout" if size < self.small else "layout"]

    @property
    def hot(self) -> Layout:
        return self._parsed["hot_layout"]
