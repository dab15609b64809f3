"""The description of a virtual infrastructure twin, in TOML: sites, hosts, links, a schedule.

A twin file names the sites a workflow runs on (each a JetStream domain with
its own ``nats-server``), the hosts of each site with their worker slots, the
uplink of every site that has a parent (latency, jitter, bandwidth, loss) and
a timed schedule of link, server and process faults. :func:`load_twin`
checks it all; every error is a :class:`~diaspora.errors.ConfigError`
naming the file and the field. The format is described in ``sims/README.md``
("The infrastructure twin").

>>> twin = parse_twin('''
... description = "an edge and an HPC centre"
... [sites.hpc]
... domain = "hpc"
... hosts = { compute = 2 }
... [sites.edge]
... domain = "edge"
... parent = "hpc"
... [links.edge]
... latency = 0.01
... bandwidth = 1e6
... [[schedule]]
... at = 5.0
... kind = "cut_link"
... site = "edge"
... duration = 2.0
... ''', source="demo.toml")
>>> twin.slots("hpc"), twin.links["edge"].bandwidth, twin.schedule[0].describe()
(2, 1000000.0, 'cut_link edge duration=2.0')
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Final

from diaspora._tomlfile import TomlReader, load_toml
from diaspora.errors import ConfigError
from diaspora.fabric import SiteSpec, check_sites

__all__ = [
    "MSS_BYTES",
    "LinkSpec",
    "TwinFault",
    "TwinFaultKind",
    "TwinSite",
    "TwinSpec",
    "load_twin",
    "mathis_rate",
    "parse_twin",
]

#: Segment size the loss model assumes (bytes): an Ethernet MTU less the IP and TCP headers.
MSS_BYTES: Final = 1460
_TOP_KEYS: Final = frozenset({"description", "sites", "links", "schedule"})
_SITE_KEYS: Final = frozenset({"domain", "parent", "hosts"})
_LINK_KEYS: Final = frozenset({"latency", "jitter", "bandwidth", "loss"})
_FAULT_KEYS: Final = frozenset({"at", "kind", "site", "target", "duration", "seconds", "rate"})


class TwinFaultKind(Enum):
    """What a scheduled fault does; ``layer`` says what it acts on."""

    CUT_LINK = "cut_link"  # the uplink refuses connections (and resets open ones)
    BLACKHOLE = "blackhole"  # every byte on the uplink is held
    LATENCY = "latency"  # extra delay each way, then back to the link's own
    BANDWIDTH = "bandwidth"  # congestion: a lower cap, then back to the link's own
    RESET_LINK = "reset_link"  # every open connection on the uplink is reset
    KILL_SERVER = "kill_server"  # SIGKILL the site's server; restarted after ``duration``
    RESTART_SERVER = "restart_server"  # graceful stop and start, same port and store
    KILL_PROCESS = "kill_process"  # SIGKILL the OS process running ``target`` (an actor id)

    @property
    def layer(self) -> str:
        """``link``, ``server`` or ``process``."""
        if self in (TwinFaultKind.KILL_SERVER, TwinFaultKind.RESTART_SERVER):
            return "server"
        return "process" if self is TwinFaultKind.KILL_PROCESS else "link"


_NEEDS_DURATION: Final = frozenset(
    {TwinFaultKind.BLACKHOLE, TwinFaultKind.LATENCY, TwinFaultKind.BANDWIDTH}
)


def mathis_rate(rtt_s: float, loss: float) -> float:
    """The throughput (bytes/s) one TCP flow keeps at ``loss`` over ``rtt_s``:
    MSS / RTT x 1.22 / sqrt(loss) (Mathis et al. 1997); ``inf`` without loss.

    >>> round(mathis_rate(0.02, 0.01) / 1e3)  # 20 ms round trip, 1 % loss: ~891 kB/s
    891
    """
    if loss <= 0:
        return math.inf
    return MSS_BYTES / max(rtt_s, 1e-4) * 1.22 / math.sqrt(loss)


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """The uplink of a site to its parent: one-way ``latency`` and ``jitter`` (seconds), the
    ``bandwidth`` cap each way (bytes/s, ``None``: none) and packet ``loss`` (0-1)."""

    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: float | None = None
    loss: float = 0.0

    @property
    def rate(self) -> float | None:
        """The cap the proxy applies: ``bandwidth``, lowered to what TCP keeps at ``loss``."""
        lossy = mathis_rate(2 * (self.latency + self.jitter / 2), self.loss)
        caps = [c for c in (self.bandwidth, lossy) if c is not None and math.isfinite(c)]
        return min(caps) if caps else None


@dataclass(frozen=True, slots=True)
class TwinSite:
    """One site: its JetStream ``domain``, its ``parent`` and its hosts' worker slots."""

    name: str
    domain: str
    parent: str | None = None
    hosts: Mapping[str, int] = field(default_factory=dict)

    def spec(self, *, link_proxy: bool) -> SiteSpec:
        """The fabric's :class:`~diaspora.fabric.SiteSpec` of an embedded server for it."""
        return SiteSpec(self.name, domain=self.domain, parent=self.parent, link_proxy=link_proxy)


@dataclass(frozen=True, slots=True)
class TwinFault:
    """One scheduled fault, ``at`` seconds after the twin starts its schedule."""

    at: float
    kind: TwinFaultKind
    site: str | None = None
    target: str | None = None
    duration: float | None = None
    seconds: float | None = None
    rate: float | None = None

    def describe(self) -> str:
        """``cut_link edge duration=2.0``: the kind, what it acts on, its parameters."""
        parts = [self.kind.value, self.target or self.site or ""]
        for name in ("duration", "seconds", "rate"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        return " ".join(p for p in parts if p)


@dataclass(frozen=True, slots=True)
class TwinSpec:
    """A whole twin: sites (parents first is not required), uplinks, fault schedule."""

    source: str
    description: str
    sites: tuple[TwinSite, ...]
    links: Mapping[str, LinkSpec]
    schedule: tuple[TwinFault, ...] = ()

    def site(self, name: str) -> TwinSite:
        for site in self.sites:
            if site.name == name:
                return site
        known = ", ".join(s.name for s in self.sites)
        raise ConfigError(f"{self.source}: no site {name!r} in the twin (sites: {known})")

    def slots(self, name: str) -> int:
        """Worker slots of a site: the sum over its hosts (1 when it declares none)."""
        hosts = self.site(name).hosts
        return sum(hosts.values()) if hosts else 1

    def site_specs(self) -> tuple[SiteSpec, ...]:
        """Embedded sites, a link proxy on every uplink (so the schedule can act on it)."""
        return tuple(s.spec(link_proxy=s.parent is not None) for s in self.sites)

    def with_schedule(self, schedule: tuple[TwinFault, ...]) -> TwinSpec:
        """The same twin with another fault schedule (a ``--faults`` file's)."""
        return TwinSpec(self.source, self.description, self.sites, self.links, schedule)

    def check_sites_match(self, sites: tuple[SiteSpec, ...], where: str) -> None:
        """Refuse a workflow whose ``[sites]`` are not the twin's (same names and domains)."""
        mine = {(s.name, s.domain, s.parent) for s in self.sites}
        theirs = {(s.name, s.domain, s.parent) for s in sites}
        if mine != theirs:
            raise ConfigError(
                f"{where}: [sites] {sorted(theirs)} do not match the twin {self.source} "
                f"{sorted(mine)}: give both the same site names, domains and parents"
            )


def load_twin(path: str | Path) -> TwinSpec:
    """Read and check a twin file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the twin file: {exc.strerror}") from exc
    return parse_twin(text, source=str(path))


def parse_twin(text: str, *, source: str = "<twin>") -> TwinSpec:
    """Check a twin document; see the module's docstring for its shape."""
    reader = TomlReader(source)
    top = load_toml(text, source)
    reader.keys(top, "", _TOP_KEYS)
    description = reader.string(
        reader.required(top, "description", "", "one line saying what the twin is"), "description"
    )
    sites = _sites(
        reader, reader.table(reader.required(top, "sites", "", "[sites.<name>]"), "sites")
    )
    links = _links(reader, reader.table(top.get("links", {}), "links"), sites)
    schedule = parse_schedule(reader, top.get("schedule", []), sites, "schedule")
    return TwinSpec(source, description, sites, links, schedule)


def _sites(reader: TomlReader, table: Mapping[str, Any]) -> tuple[TwinSite, ...]:
    out = []
    for name, raw in table.items():
        where = f"sites.{name}"
        site = reader.table(raw, where)
        reader.keys(site, where, _SITE_KEYS)
        domain = reader.string(
            reader.required(site, "domain", where, "its JetStream domain"), f"{where}.domain"
        )
        parent = site.get("parent")
        if parent is not None:
            parent = reader.string(parent, f"{where}.parent")
        hosts_raw = reader.table(site.get("hosts", {}), f"{where}.hosts")
        hosts = {
            host: reader.integer(slots, f"{where}.hosts.{host}", minimum=1)
            for host, slots in hosts_raw.items()
        }
        out.append(TwinSite(name, domain, parent, hosts))
    if not out:
        raise reader.fail("sites", "declare at least one [sites.<name>] table")
    check_sites(s.spec(link_proxy=False) for s in out)  # names, domains, parents, cycles
    return tuple(out)


def _links(
    reader: TomlReader, table: Mapping[str, Any], sites: tuple[TwinSite, ...]
) -> dict[str, LinkSpec]:
    children = {s.name for s in sites if s.parent is not None}
    out = {}
    for name, raw in table.items():
        where = f"links.{name}"
        if name not in children:
            raise reader.fail(
                where,
                f"{name!r} is not a site with a parent (links are uplinks: "
                f"{', '.join(sorted(children)) or 'none'})",
            )
        link = reader.table(raw, where)
        reader.keys(link, where, _LINK_KEYS)
        bandwidth = link.get("bandwidth")
        loss = reader.number(link.get("loss", 0.0), f"{where}.loss")
        if loss >= 1:
            raise reader.fail(f"{where}.loss", f"{loss!r} must be < 1 (a fraction of packets)")
        out[name] = LinkSpec(
            latency=reader.number(link.get("latency", 0.0), f"{where}.latency"),
            jitter=reader.number(link.get("jitter", 0.0), f"{where}.jitter"),
            bandwidth=None
            if bandwidth is None
            else reader.number(bandwidth, f"{where}.bandwidth", positive=True),
            loss=loss,
        )
    for name in children - set(out):
        out[name] = LinkSpec()
    return out


def parse_schedule(
    reader: TomlReader, value: object, sites: tuple[TwinSite, ...], where: str
) -> tuple[TwinFault, ...]:
    """The ``[[schedule]]`` tables (or a faults file's): each checked against the sites."""
    if not isinstance(value, list):
        raise reader.fail(where, f"expected an array of tables ([[{where}]])")
    names = {s.name for s in sites}
    uplinks = {s.name for s in sites if s.parent is not None}
    out = []
    for i, raw in enumerate(value):
        at_ = f"{where}[{i}]"
        table = reader.table(raw, at_)
        reader.keys(table, at_, _FAULT_KEYS)
        kind = reader.choice(
            reader.required(table, "kind", at_, "what the fault does"), TwinFaultKind, f"{at_}.kind"
        )
        at = reader.number(
            reader.required(table, "at", at_, "seconds after the start"), f"{at_}.at"
        )
        values: dict[str, float | None] = {}
        for key in ("duration", "seconds", "rate"):
            values[key] = (
                None
                if key not in table
                else reader.seconds(table[key], f"{at_}.{key}")
                if key != "rate"
                else reader.number(table[key], f"{at_}.rate", positive=True)
            )
        site = target = None
        if kind.layer == "process":
            target = reader.string(
                reader.required(table, "target", at_, "the actor id whose process is killed"),
                f"{at_}.target",
            )
        else:
            site = reader.string(
                reader.required(table, "site", at_, "the site (its uplink, or its server)"),
                f"{at_}.site",
            )
            allowed = uplinks if kind.layer == "link" else names
            if site not in allowed:
                what = "a site with an uplink" if kind.layer == "link" else "a site"
                raise reader.fail(
                    f"{at_}.site", f"{site!r} is not {what} ({', '.join(sorted(allowed))})"
                )
        if kind in _NEEDS_DURATION and values["duration"] is None:
            raise reader.fail(at_, f"{kind.value} needs a duration (seconds)")
        if kind is TwinFaultKind.LATENCY and values["seconds"] is None:
            raise reader.fail(at_, "latency needs seconds (the delay added each way)")
        if kind is TwinFaultKind.BANDWIDTH and values["rate"] is None:
            raise reader.fail(at_, "bandwidth needs rate (bytes/s each way)")
        out.append(
            TwinFault(at, kind, site, target, values["duration"], values["seconds"], values["rate"])
        )
    return tuple(sorted(out, key=lambda f: f.at))


def load_schedule(path: str | Path, twin: TwinSpec) -> tuple[TwinFault, ...]:
    """A faults file (``[[faults]]`` tables, the schedule's fields) checked against ``twin``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the faults file: {exc.strerror}") from exc
    reader = TomlReader(str(path))
    top = load_toml(text, str(path))
    reader.keys(top, "", frozenset({"description", "faults"}))
    return parse_schedule(reader, top.get("faults", []), twin.sites, "faults")
