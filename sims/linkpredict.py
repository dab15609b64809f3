"""A link's twin: what a leaf link between two sites will do, predicted from what it did.

:class:`LinkPredictor` probes one uplink of a running twin with core
request/reply across the leaf link (a small request for the round trip every
``interval``; every ``throughput_every`` probes, two large ones back to back
for the throughput, the first emptying a shaper's burst allowance), keeps
exponentially weighted
estimates, and predicts the time to move ``n`` bytes up the link. Every probe
is kept as a :class:`LinkSample`, so a monitor (or the report) can compare
the prediction with what the link then does, and with what the twin
declared for it.

>>> p = LinkPredictor.__new__(LinkPredictor)
>>> p.rtt_s, p.rate, p.up = 0.02, 1e6, True
>>> round(p.predict(100_000), 3)  # half a round trip, then 100 kB at 1 MB/s
0.11
"""

from __future__ import annotations

import math
import os
import time
from contextlib import AsyncExitStack
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Final, Self

import anyio

from diaspora.errors import FabricUnavailable
from diaspora.fabric import Fabric, Inbound
from diaspora.log import get_logger

__all__ = ["LinkPredictor", "LinkSample", "echo_subject"]

#: Weight of the newest probe in the estimates.
_ALPHA: Final = 0.3
_PROBE_TIMEOUT: Final = 2.0
#: Bounds of the large probes' size, and the transfer time it aims at.
_MIN_PROBE: Final = 16 * 1024
_MAX_PROBE: Final = 4 * 1024 * 1024
_PROBE_TRANSFER_S: Final = 0.1
#: A large probe whose transfer is less than this share of its time measured only latency.
_MIN_TRANSFER: Final = 0.2
#: How long entering waits for the first probe to be answered.
_INTEREST_WAIT: Final = 10.0


def echo_subject(site: str) -> str:
    """The subject the parent side answers a site's probes on (it crosses the leaf link)."""
    return f"diaspora.twin.echo.{site}"


@dataclass(frozen=True, slots=True)
class LinkSample:
    """One probe: when (Unix time), whether the link answered, the round trip and throughput
    measured, and what the predictor had predicted for the big probe just before."""

    at: float
    up: bool
    rtt_s: float | None = None
    rate: float | None = None
    predicted_s: float | None = None
    measured_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LinkPredictor:
    """Probes ``site``'s uplink every ``interval`` seconds: ``child`` is a fabric of the site,
    ``parent`` one of its parent (it answers the probes)."""

    def __init__(
        self,
        site: str,
        child: Fabric,
        parent: Fabric,
        *,
        interval: float = 1.0,
        throughput_every: int = 5,
        probe_bytes: int = 64 * 1024,
    ) -> None:
        self.site = site
        self.child = child
        self.parent = parent
        self.interval = interval
        #: Every how many probes the throughput is measured too (it costs two large probes).
        self.throughput_every = throughput_every
        self.probe_bytes = probe_bytes
        #: Estimates: round trip (seconds) and throughput up the link (bytes/s).
        self.rtt_s: float | None = None
        self.rate: float | None = None
        self.up = True
        self.samples: list[LinkSample] = []
        self._stack: AsyncExitStack | None = None
        self._log = get_logger(site=site)

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(
                self.parent.subscription(echo_subject(self.site), self._echo, flush=True)
            )
            await self._await_interest()
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            tg.start_soon(self._loop)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _await_interest(self) -> None:
        """Wait until the echo's interest has crossed the leaf link (a fraction of a second)."""
        with anyio.move_on_after(_INTEREST_WAIT):
            while True:
                try:
                    await self._time(b"p")
                    return
                except (FabricUnavailable, TimeoutError):
                    await anyio.sleep(0.05)
        self._log.warning("link_probe_unanswered", waited_s=_INTEREST_WAIT)

    def predict(self, nbytes: int) -> float:
        """Seconds to move ``nbytes`` up the link: ``inf`` while it is down or unmeasured."""
        if not self.up or self.rtt_s is None or self.rate is None:
            return math.inf
        return self.rtt_s / 2 + nbytes / self.rate

    async def _echo(self, msg: Inbound) -> None:
        if msg.reply:
            await msg.respond(b"")

    async def probe(self, *, throughput: bool = True) -> LinkSample:
        """A small probe (the round trip) and, with ``throughput``, two large ones back to back
        (the first empties a shaper's burst allowance, the second is timed); updates the
        estimates. The large probes' size follows the estimate (about 0.1 s of transfer)."""
        now = time.time()
        try:
            small = await self._time(b"p")
        except (FabricUnavailable, TimeoutError) as exc:
            self.up = False
            self._log.info("link_probe_failed", error=type(exc).__name__)
            sample = LinkSample(now, False)
            self.samples.append(sample)
            return sample
        self.up = True
        rtt = small if self.rtt_s is None else _ALPHA * small + (1 - _ALPHA) * self.rtt_s
        self.rtt_s = rtt
        if not throughput:
            sample = LinkSample(now, True, small)
            self.samples.append(sample)
            return sample
        size = self.probe_bytes
        predicted = self.predict(size)
        measured: float | None = None
        try:
            payload = os.urandom(size)  # leaf links compress (s2): zeros would not count
            await self._time(payload)
            large = await self._time(payload)
        except (FabricUnavailable, TimeoutError):
            # small probes answer, this much does not in time: slower than size / timeout
            rate = size / _PROBE_TIMEOUT
            self.probe_bytes = max(_MIN_PROBE, size // 4)
        else:
            measured = large - small / 2
            transfer = large - min(small, rtt)
            if transfer < _MIN_TRANSFER * large:  # the round trip was all of it: no reading
                sample = LinkSample(now, True, small, None, None, measured)
                self.samples.append(sample)
                return sample
            rate = size / transfer
            self.probe_bytes = int(min(_MAX_PROBE, max(_MIN_PROBE, rate * _PROBE_TRANSFER_S)))
        self.rate = rate if self.rate is None else _ALPHA * rate + (1 - _ALPHA) * self.rate
        sample = LinkSample(
            now, True, small, rate, None if math.isinf(predicted) else predicted, measured
        )
        self.samples.append(sample)
        return sample

    async def _time(self, payload: bytes) -> float:
        started = time.monotonic()
        await self.child.request(echo_subject(self.site), payload, timeout=_PROBE_TIMEOUT)
        return time.monotonic() - started

    async def _loop(self) -> None:
        n = 0
        while True:
            await self.probe(throughput=n % self.throughput_every == 0)
            n += 1
            await anyio.sleep(self.interval)

    def summary(self) -> dict[str, Any]:
        """Estimates and the mean absolute error of the predictions against the measurements."""
        pairs = [
            (s.predicted_s, s.measured_s)
            for s in self.samples
            if s.predicted_s is not None and s.measured_s is not None
        ]
        error = sum(abs(p - m) for p, m in pairs) / len(pairs) if pairs else None
        return {
            "site": self.site,
            "rtt_s": self.rtt_s,
            "rate_bytes_s": self.rate,
            "probes": len(self.samples),
            "down_probes": sum(1 for s in self.samples if not s.up),
            "prediction_mae_s": error,
        }
