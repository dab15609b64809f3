"""Waiting for conditions with a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["wait_until"]


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str | None = None,
) -> None:
    """Poll ``condition`` (sync or async) until it is true; ``TimeoutError`` after ``timeout``.

    >>> async def demo() -> None:
    ...     await wait_until(lambda: True, what="always true")
    >>> anyio.run(demo)
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            label = what or getattr(condition, "__name__", "condition")
            raise TimeoutError(f"{label} not true after {timeout}s")
        await anyio.sleep(interval)
