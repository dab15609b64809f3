"""Exponential backoff with jitter: the one retry-delay formula Diaspora uses.

Supervisors wait it out between restarts of a child; the fabric between
reconnects; mailboxes and publishers between failed attempts to create a
consumer or open a session.

>>> import random
>>> backoff = Backoff(initial=0.1, factor=2.0, max=1.0, jitter=0.0)
>>> [backoff.delay(n, random.Random(0)) for n in (1, 2, 3, 4, 5, 100_000)]
[0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from diaspora.errors import ConfigError

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter between consecutive attempts.

    The n-th consecutive attempt waits ``min(max, initial * factor**(n-1))``
    seconds, multiplied by a random factor in ``[1 - jitter, 1 + jitter]``.
    For a supervisor, a child that stayed up for ``reset_after`` seconds
    (default: the supervisor's ``period``) starts again from ``initial``.

    >>> Backoff(initial=0.1, factor=2.0, max=1.0, jitter=0.0).delay(4, random.Random(0))
    0.8
    """

    initial: float = 0.1
    max: float = 10.0
    factor: float = 2.0
    jitter: float = 0.1
    reset_after: float | None = None

    def __post_init__(self) -> None:
        for name in ("initial", "max", "factor", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"backoff.{name}: {value!r} is not a number")
        if self.initial <= 0:
            raise ConfigError(f"backoff.initial: {self.initial!r} must be > 0 seconds")
        if self.max < self.initial:
            raise ConfigError(f"backoff.max: {self.max!r} must be >= initial ({self.initial})")
        if self.factor < 1:
            raise ConfigError(f"backoff.factor: {self.factor!r} must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ConfigError(f"backoff.jitter: {self.jitter!r} must be in [0, 1)")
        if self.reset_after is not None and (
            isinstance(self.reset_after, bool)
            or not isinstance(self.reset_after, int | float)
            or self.reset_after <= 0
        ):
            raise ConfigError(f"backoff.reset_after: {self.reset_after!r} must be > 0 seconds")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the ``attempt``-th consecutive attempt (``attempt`` >= 1).

        ``rng`` draws the jitter (default: the ``random`` module's generator);
        pass a seeded one for reproducible delays.
        """
        exponent = max(0, attempt - 1)
        if self.factor > 1:
            # past the cap the exponent no longer matters; bounding it avoids float overflow
            exponent = min(exponent, math.ceil(math.log(self.max / self.initial, self.factor)))
        base = min(self.max, self.initial * self.factor**exponent)
        if self.jitter:
            draw = rng.random() if rng is not None else random.random()
            base *= 1 - self.jitter + 2 * self.jitter * draw
        return base
