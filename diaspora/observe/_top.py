"""``diaspora top``: a live terminal view of a running workflow (rich).

On a terminal it takes the whole screen and redraws when the model changes
(at most 4 times a second, at least once a second for the clocks); keys are
read from the terminal in cbreak mode (no Enter needed; ``q`` or Ctrl-C
quits and gives the terminal back as it was). Without a terminal (a pipe,
``ssh host diaspora top`` without ``-t``) it prints one frame every
``--every`` seconds. ``FILE`` (what ``diaspora events --json`` wrote) is
shown instead of a live fabric.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Iterator

import anyio
from rich.console import Console
from rich.live import Live

from diaspora.observe._cli import observer
from diaspora.observe._eventscmd import read_recorded
from diaspora.observe._model import WorkflowModel
from diaspora.observe._view import TopState, render
from diaspora.observe._watch import Watcher

__all__ = ["run_top"]

_MIN_REDRAW_S = 0.25


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[bool]:
    """Keys one by one, unechoed, while the block runs (``False``: not a terminal)."""
    if fd < 0 or not os.isatty(fd):
        yield False
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _keys(fd: int, on_key: Callable[[str], bool], quit: anyio.Event) -> None:
    """Feed each key pressed to ``on_key`` until it returns ``False``."""
    loop = asyncio.get_running_loop()
    pressed: asyncio.Queue[str] = asyncio.Queue()

    def readable() -> None:
        data = os.read(fd, 64)
        if not data:
            pressed.put_nowait("q")  # end of input: nobody can press q any more
        for char in data.decode(errors="replace"):
            pressed.put_nowait(char)

    loop.add_reader(fd, readable)
    try:
        while not quit.is_set():
            if not on_key(await pressed.get()):
                quit.set()
    finally:
        loop.remove_reader(fd)


class _Wake:
    """A redraw is due: the model changed, a key was pressed, or a second went by."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, *, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await self._event.wait()
        self._event = anyio.Event()


async def _forward_changes(watcher: Watcher, wake: _Wake) -> None:
    version = watcher.model.version
    while True:
        version = await watcher.changed(version)
        wake.set()


async def _show(
    model: WorkflowModel,
    watcher: Watcher | None,
    source: str,
    console: Console,
    every: float,
) -> None:
    state = TopState()
    quit = anyio.Event()
    try:
        fd = sys.stdin.fileno()
    except (OSError, ValueError):  # no real stdin (captured, closed): no keys either
        fd = -1
    with _cbreak(fd) as keyboard:
        interactive = keyboard and console.is_terminal
        async with anyio.create_task_group() as tg:
            if watcher is not None:
                tg.start_soon(watcher.run)
            if not interactive:
                await _batch(model, watcher, source, console, every)
                tg.cancel_scope.cancel()
                return
            wake = _Wake()

            def on_key(key: str) -> bool:
                wake.set()
                return state.key(key)

            tg.start_soon(_keys, fd, on_key, quit)
            if watcher is not None:
                tg.start_soon(_forward_changes, watcher, wake)
            with Live(console=console, screen=True, auto_refresh=False) as live:
                while not quit.is_set():
                    frame = render(
                        model.snapshot(series=False), state, source=source, height=console.height
                    )
                    live.update(frame, refresh=True)
                    await wake.wait(timeout=1.0)
                    if not quit.is_set():
                        await anyio.sleep(_MIN_REDRAW_S)
            tg.cancel_scope.cancel()


async def _batch(
    model: WorkflowModel, watcher: Watcher | None, source: str, console: Console, every: float
) -> None:
    """No terminal: one frame now (a file) or every ``every`` seconds (live)."""
    if watcher is None:
        console.print(render(model.snapshot(series=False), TopState(), source=source))
        return
    with anyio.move_on_after(30):
        await watcher.caught_up.wait()
    while True:
        console.print(render(model.snapshot(series=False), TopState(), source=source))
        console.file.flush()
        await anyio.sleep(every)


def run_top(args: argparse.Namespace) -> int:
    """The ``top`` command (see the module docstring); exit status 0 on q or Ctrl-C."""
    console = Console()
    if not console.is_terminal:  # a pipe or a file: no screen to fit, keep every column whole
        console = Console(width=max(console.width, 200))
    every = float(getattr(args, "every", 2.0) or 2.0)

    async def main() -> None:
        if args.file:
            model = WorkflowModel()
            for seen in read_recorded(args.file):
                model.apply(seen)
            await _show(model, None, args.file, console, every)
            return
        async with observer(args.url, "top") as fabric:
            watcher = Watcher(fabric, history=args.history, monitors=args.monitor)
            await _show(watcher.model, watcher, fabric.urls[0], console, every)

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)
    return 0
