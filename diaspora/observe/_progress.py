"""Progress of long work on a terminal, and nothing at all in a log.

:class:`Progress` draws a bar (a spinner when the total is not known) with
the elapsed time and a note, on ``stream`` (stderr by default), only when
that stream is a terminal; in CI logs, pipes and files it writes nothing,
so their output stays what it was. The bar is rich's (the ``observe``
extra); without rich there is no bar either.

>>> import io
>>> out = io.StringIO()
>>> with Progress("summing", total=3, stream=out) as bar:
...     for _ in range(3):
...         bar.advance()
>>> bar.enabled, out.getvalue()
(False, '')
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any, Self, TextIO

__all__ = ["Progress"]


class Progress:
    """A progress bar for ``what`` on a terminal (see the module docstring).

    ``total`` is the amount of work (``None``: unknown, a spinner);
    ``enabled`` forces it on or off (default: whether ``stream`` is a
    terminal and ``$DIASPORA_PROGRESS`` is not ``0``).
    """

    def __init__(
        self,
        what: str,
        *,
        total: float | None = None,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.what = what
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = _is_terminal(self.stream) and os.environ.get("DIASPORA_PROGRESS") != "0"
        self.enabled = enabled and _has_rich()
        self.completed = 0.0
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                SpinnerColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as Bar

            columns = [SpinnerColumn(), TextColumn("{task.description}")]
            if self.total is not None:
                columns += [BarColumn(), TaskProgressColumn()]
            columns += [TimeElapsedColumn(), TextColumn("{task.fields[note]}")]
            console = Console(file=self.stream, force_terminal=True)
            # stdout printed meanwhile goes above the bar on a terminal, and is left alone
            # when it is a pipe or a file (it must not end up on this stream)
            shown = _is_terminal(sys.stdout)
            self._bar = Bar(
                *columns,
                console=console,
                transient=True,
                redirect_stdout=shown,
                redirect_stderr=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, note="")
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def advance(self, amount: float = 1.0, *, note: str | None = None) -> None:
        """``amount`` more of the work is done."""
        self.update(self.completed + amount, note=note)

    def update(self, completed: float | None = None, *, note: str | None = None) -> None:
        """Set how much is done, and/or the note shown after the bar."""
        if completed is not None:
            self.completed = completed
        if self._bar is None:
            return
        fields: dict[str, Any] = {}
        if note is not None:
            fields["note"] = note
        self._bar.update(self._task, completed=self.completed, **fields)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True
