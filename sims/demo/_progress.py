"""The live view of a demo run: a rich table on a terminal, plain lines without rich, quiet
when the output is not a terminal (a pipe, a file, CI)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol, Self, TextIO

__all__ = ["Progress", "make_progress"]


class Progress(Protocol):
    """Shows one status line (or table) per look at the workflow."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def show(self, status: Mapping[str, Any]) -> None: ...

    def note(self, text: str) -> None: ...


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


class _Quiet:
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(self, status: Mapping[str, Any]) -> None:
        return None

    def note(self, text: str) -> None:
        return None


class _Lines:
    """One line per look: ``t=12s frames=480 reconstructed=160 ...``."""

    def __init__(self, out: TextIO, every: float) -> None:
        self.out, self.every, self._last = out, every, -1e9

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(self, status: Mapping[str, Any]) -> None:
        t = float(status.get("t", 0.0))
        if t - self._last < self.every:
            return
        self._last = t
        parts = [f"{key}={_fmt(value)}" for key, value in status.items() if key != "t"]
        print(f"t={t:5.1f}s " + " ".join(parts), file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class _Rich:
    """A table redrawn in place (rich's ``Live``)."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=out)
        self._live = Live(console=self._console, refresh_per_second=4, transient=False)

    def __enter__(self) -> Self:
        self._live.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.__exit__(et, ev, tb)

    def show(self, status: Mapping[str, Any]) -> None:
        from rich.table import Table

        table = Table(title=f"ptychography on the twin, t = {float(status.get('t', 0)):.0f} s")
        table.add_column("what")
        table.add_column("now", justify="right")
        for key, value in status.items():
            if key != "t":
                table.add_row(key.replace("_", " "), _fmt(value))
        self._live.update(table)

    def note(self, text: str) -> None:
        self._console.print(text)


def make_progress(
    out: TextIO | None = None, *, plain: bool = False, every: float = 2.0
) -> Progress:
    """The view for ``out`` (default stderr): rich on a terminal if installed, else plain lines
    (``plain`` forces them, even when ``out`` is not a terminal); nothing when not a terminal."""
    out = sys.stderr if out is None else out
    if plain:
        return _Lines(out, every)
    if not out.isatty():
        return _Quiet()
    try:
        import rich  # noqa: F401
    except ImportError:
        return _Lines(out, every)
    return _Rich(out)
