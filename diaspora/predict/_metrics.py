"""The built-in metrics source: a nats-server's own signals as streams of numbers for monitors.

:class:`MetricsSource` is a source actor (no inputs) that every ``period``
seconds reads the server's monitoring endpoints (``/connz``, ``/leafz``,
``/jsz``: see :mod:`diaspora.fabric._monitoring`) and emits each sample
``{"name", "value", "t"}`` to ``<prefix>.<metric>``: for instance
``metrics.connz.pending_bytes`` (one sample per connection, ``name`` its
connection name), ``metrics.connz.rtt_s``, ``metrics.leafz.rtt_s``,
``metrics.jsz.num_pending`` and ``metrics.jsz.num_redelivered`` (``name``
``<stream>/<consumer>``). A monitor watches one of them with ``key =
"name"``, ``value = "value"``, ``time = "t"``.

>>> spec = MetricsSpec("http://127.0.0.1:8222", period=0.5)
>>> spec.subject("connz.pending_bytes")
'metrics.connz.pending_bytes'
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from diaspora.actor import Actor, ActorRuntime
from diaspora.errors import ConfigError, FabricUnavailable
from diaspora.fabric._monitoring import ENDPOINTS, monitoring_json, samples
from diaspora.fabric._naming import check_subject

if TYPE_CHECKING:
    from diaspora.fabric import Fabric

__all__ = ["MetricsSource", "MetricsSpec", "metrics_runtime"]


@dataclass(frozen=True, slots=True)
class MetricsSpec:
    """Where the monitoring port is (``url``), how often to sample, where samples go."""

    url: str
    period: float = 1.0
    prefix: str = "metrics"
    endpoints: tuple[str, ...] = ("connz", "leafz", "jsz")

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url:
            raise ConfigError(
                f"metrics.url: {self.url!r} must be the monitoring URL (http://host:port)"
            )
        if not self.period > 0:
            raise ConfigError(f"metrics.period: {self.period!r} must be seconds > 0")
        check_subject(self.prefix, where="metrics.prefix")
        object.__setattr__(self, "endpoints", tuple(self.endpoints))
        for endpoint in self.endpoints:
            if endpoint not in ENDPOINTS:
                raise ConfigError(
                    f"metrics.endpoints: {endpoint!r} is not one of {', '.join(ENDPOINTS)}"
                )

    def subject(self, metric: str) -> str:
        return f"{self.prefix}.{metric}"

    @classmethod
    def from_mapping(cls, table: object, where: str = "metrics") -> MetricsSpec:
        if not isinstance(table, dict):
            raise ConfigError(f'{where}: expected a table like {{ url = "http://127.0.0.1:8222" }}')
        unknown = set(table) - {"url", "period", "prefix", "endpoints"}
        if unknown:
            raise ConfigError(
                f"{where}: unknown keys {sorted(unknown)} (url, period, prefix, endpoints)"
            )
        try:
            return cls(
                table.get("url"),  # type: ignore[arg-type]
                float(table.get("period", 1.0)),
                table.get("prefix", "metrics"),
                tuple(table.get("endpoints", ("connz", "leafz", "jsz"))),
            )
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from exc


class MetricsSource(Actor):
    """Samples the server every ``spec.period`` seconds (see the module docstring).

    An endpoint that does not answer is logged and skipped for that round:
    the source keeps sampling the others.
    """

    checkpoint_every: ClassVar[int | None] = 500

    def __init__(self, spec: MetricsSpec) -> None:
        self.spec = spec
        self.rounds = 0

    def snapshot(self) -> dict[str, Any]:
        return {"rounds": self.rounds}

    def restore(self, state: dict[str, Any]) -> None:
        self.rounds = int(state["rounds"])

    async def produce(self) -> None:
        spec = self.spec
        while not self.stopping:
            started = time.time()
            for endpoint in spec.endpoints:
                try:
                    data = await monitoring_json(spec.url, endpoint)
                except FabricUnavailable as exc:
                    self.log.warning("metrics_unavailable", endpoint=endpoint, reason=str(exc))
                    continue
                for metric, name, value in samples(endpoint, data):
                    record = {"name": name, "value": value, "t": started}
                    await self.emit(spec.subject(metric), record)
            self.rounds += 1
            await anyio.sleep(max(0.0, spec.period - (time.time() - started)))


def metrics_runtime(
    spec: MetricsSpec, fabric: Fabric, *, id: str = "metrics", **kwargs: Any
) -> ActorRuntime:
    """The runtime of a metrics source (id ``metrics``)."""
    return ActorRuntime(MetricsSource, fabric, id=id, args={"spec": spec}, **kwargs)
