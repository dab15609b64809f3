"""Sites in a workflow file: ``[sites.<name>]`` tables and each child's ``site``.

A tree whose file declares sites runs across them: each site is a
JetStream domain (a server of its own, embedded when it has no ``url``),
linked to its ``parent`` by a leaf connection (see
:class:`~diaspora.fabric.SiteSpec`). A child's ``site = "<name>"`` places it
(an actor, a process node, or a nested supervisor with everything below it)
on that site's server; children inherit their parent's site, and the root's
is ``[supervisor] site``, by default the first site of the file.

Subjects belong to one site. An input is consumed from a stream in the
domain of the actor reading it, so two actors on different sites reading
the same subject would each bind it in their own domain, and the linked
servers would store every message in both (``hierarchy.md`` G6): that is
refused, naming both places; move a stream between sites with a bridge.

>>> from diaspora.workflow import parse_config
>>> config = parse_config('''
... [sites.edge]
... domain = "edge"
... parent = "hpc"
... [sites.hpc]
... domain = "hpc"
... [supervisor]
... site = "hpc"
... [[supervisor.children]]
... id = "ingest"
... site = "edge"
... children = []
... ''', source="demo.toml")
>>> [site.name for site in config.sites], config.site_of("root"), config.site_of("root.ingest")
(['edge', 'hpc'], 'hpc', 'edge')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from diaspora._tomlfile import TomlReader
from diaspora.errors import ConfigError
from diaspora.fabric import Bridge, Direction, SiteSpec, check_sites
from diaspora.fabric._auth import AUTH_KEYS, Auth
from diaspora.fabric._naming import check_subject, is_event_input
from diaspora.supervision._spec import SupervisorSpec
from diaspora.workflow._children import ActorStart
from diaspora.workflow._node import ProcessStart

__all__ = [
    "BridgeDecl",
    "check_placements",
    "declared_outputs",
    "parse_bridges",
    "parse_sites",
    "placed_actors",
]

_SITE_KEYS: Final = frozenset({"domain", "url", "parent", "leaf_url", "link", "tls"}) | AUTH_KEYS
_LINK_KEYS: Final = frozenset({"proxy", "user", "password", "password_env", "creds_file"})
_BRIDGE_KEYS: Final = frozenset({"subject", "from", "to"})


@dataclass(frozen=True, slots=True)
class BridgeDecl:
    """A ``[[bridges]]`` table: ``subject``'s stream moved from site ``source`` to ``target``."""

    subject: str
    source: str
    target: str

    def bridge(self, sites: tuple[SiteSpec, ...]) -> Bridge:
        """The fabric's :class:`~diaspora.fabric.Bridge`: down (a mirror) to a descendant of
        the origin, else up (a source into a subject-less copy)."""
        by_name = {site.name: site for site in sites}
        down = _descends(self.target, self.source, by_name)
        return Bridge(
            self.subject,
            by_name[self.source].domain,
            by_name[self.target].domain,
            direction=Direction.DOWN if down else Direction.UP,
        )


def _descends(name: str, ancestor: str, by_name: Mapping[str, SiteSpec]) -> bool:
    parent = by_name[name].parent
    while parent is not None:
        if parent == ancestor:
            return True
        parent = by_name[parent].parent
    return False


def parse_bridges(
    reader: TomlReader, value: object, sites: tuple[SiteSpec, ...]
) -> tuple[BridgeDecl, ...]:
    """The ``[[bridges]]`` tables: a subject and two declared, different sites each."""
    if not isinstance(value, list):
        raise reader.fail("bridges", "expected an array of tables ([[bridges]])")
    names = {site.name for site in sites}
    out: list[BridgeDecl] = []
    for i, raw in enumerate(value):
        where = f"bridges[{i}]"
        table = reader.table(raw, where)
        reader.keys(table, where, _BRIDGE_KEYS)
        subject = reader.string(
            reader.required(table, "subject", where, "the subject whose stream moves"),
            f"{where}.subject",
        )
        check_subject(subject, where=f"{reader.source}: {where}.subject")
        ends = []
        for key in ("from", "to"):
            site = reader.string(
                reader.required(table, key, where, f"the site the stream moves {key}"),
                f"{where}.{key}",
            )
            if site not in names:
                known = ", ".join(sorted(names)) or "none: declare [sites.<name>] tables"
                raise reader.fail(f"{where}.{key}", f"{site!r} is not a declared site ({known})")
            ends.append(site)
        if ends[0] == ends[1]:
            raise reader.fail(
                f"{where}.to", f"{ends[1]!r} is the origin too: a bridge joins two sites"
            )
        decl = BridgeDecl(subject, ends[0], ends[1])
        if any((b.subject, b.target) == (subject, decl.target) for b in out):
            raise reader.fail(where, f"a second bridge of {subject!r} into site {decl.target!r}")
        out.append(decl)
    return tuple(out)


def parse_sites(
    reader: TomlReader, value: object, base_dir: Path | None = None
) -> tuple[SiteSpec, ...]:
    """The ``[sites.<name>]`` tables, checked as a topology (names, domains, parents, cycles).

    ``link = { proxy = true }`` puts a link proxy on the site's uplink; a site's
    credentials and TLS take the keys of ``[fabric]`` (paths from ``base_dir``); on an
    embedded site its ``user``/``password_env`` also secure its server, leaf links
    included. ``link = { user = ..., password_env = ... }`` (or ``creds_file``) is what
    the site's leaf link presents to a parent that asks for credentials.
    """
    sites = []
    for name, raw in reader.table(value, "sites").items():
        where = f"sites.{name}"
        table = reader.table(raw, where)
        reader.keys(table, where, _SITE_KEYS)
        domain = reader.string(
            reader.required(table, "domain", where, "the site's JetStream domain"),
            f"{where}.domain",
        )
        text = {
            key: reader.string(table[key], f"{where}.{key}") if key in table else None
            for key in ("url", "parent", "leaf_url")
        }
        proxy, link_auth = False, None
        if "link" in table:
            link = reader.table(table["link"], f"{where}.link")
            reader.keys(link, f"{where}.link", _LINK_KEYS)
            if "proxy" in link:
                proxy = reader.boolean(link["proxy"], f"{where}.link.proxy")
            link_auth = Auth.from_mapping(
                link, where=f"{reader.source}: {where}.link", base_dir=base_dir
            )
        auth = Auth.from_mapping(table, where=f"{reader.source}: {where}", base_dir=base_dir)
        try:
            sites.append(
                SiteSpec(
                    name,
                    domain,
                    url=text["url"],
                    parent=text["parent"],
                    leaf_url=text["leaf_url"],
                    link_proxy=proxy,
                    auth=auth,
                    link_auth=link_auth,
                )
            )
        except ConfigError as exc:
            raise ConfigError(f"{reader.source}: {exc}") from exc
    if not sites:
        raise reader.fail("sites", "declares no site: omit [sites] for a single server")
    try:
        check_sites(sites)
    except ConfigError as exc:
        raise ConfigError(f"{reader.source}: {exc}") from exc
    return tuple(sites)


def placed_actors(
    spec: SupervisorSpec, path: str, site: str | None, placements: Mapping[str, str]
) -> Iterator[tuple[str, str | None, ActorStart]]:
    """Every actor of the tree: its path, its site (inherited down the tree), its start."""
    for child in spec.children:
        child_path = f"{path}.{child.id}"
        child_site = placements.get(child_path, site)
        start: object = child.start
        if isinstance(start, ProcessStart):
            start = start.target
        if isinstance(start, SupervisorSpec):
            yield from placed_actors(start, child_path, child_site, placements)
        elif isinstance(start, ActorStart):
            yield child_path, child_site, start


def check_placements(
    source: str,
    sites: tuple[SiteSpec, ...],
    placements: Mapping[str, str],
    wheres: Mapping[str, str],
    spec: SupervisorSpec,
    root: str,
    bridges: tuple[BridgeDecl, ...] = (),
) -> None:
    """Every ``site`` names a declared site; a process node's subtree stays on one site;
    a subject is consumed on one site only, and an output declared by an actor's class
    (``outputs``) is read on its site or bridged from there to where it is read."""
    names = {site.name for site in sites}
    for path, site in placements.items():
        if site not in names:
            known = ", ".join(sorted(names)) or "none: declare [sites.<name>] tables"
            raise ConfigError(
                f"{source}: {wheres[path]}.site: {site!r} is not a declared site ({known})"
            )
    if not sites:
        return
    _check_nodes(source, spec, root, placements.get(root), placements, wheres)
    readers: dict[str, tuple[str, str | None]] = {}
    read_on: dict[str, dict[str | None, str]] = {}  # subject -> site -> its first reader
    writers: dict[str, tuple[str, str | None]] = {}
    for path, at, start in placed_actors(spec, root, placements.get(root), placements):
        for subject in start.inputs or tuple(getattr(start.actor, "inputs", ())):
            if is_event_input(subject):
                continue
            read_on.setdefault(subject, {}).setdefault(at, path)
            first = readers.setdefault(subject, (path, at))
            bridged = {b.target for b in bridges if b.subject == subject}
            if first[1] != at and not ({first[1], at} - {_origin(subject, bridges)} <= bridged):
                raise ConfigError(
                    f"{source}: actor {path!r} on site {at!r} reads {subject!r}, which "
                    f"actor {first[0]!r} reads on site {first[1]!r}: a subject is consumed on "
                    "one site (its stream lives in one domain); move it between sites with a "
                    "bridge, or place both actors on one site"
                )
        for subject in declared_outputs(start):
            writer = writers.setdefault(subject, (path, at))
            if writer[1] != at:
                raise ConfigError(
                    f"{source}: actor {path!r} on site {at!r} emits {subject!r}, which actor "
                    f"{writer[0]!r} emits on site {writer[1]!r}: a subject's stream lives on "
                    "one site; emit it on one site and bridge it to the others"
                )
    for subject, (emitter, emitted_on) in writers.items():
        _check_output(source, subject, emitter, emitted_on, read_on.get(subject, {}), bridges)


def declared_outputs(start: ActorStart) -> tuple[str, ...]:
    """The subjects an actor declares it emits (its class's ``outputs``; a factory that is
    not an Actor class declares none, nor do subjects only named when emitting)."""
    return tuple(getattr(start.actor, "outputs", ())) if isinstance(start.actor, type) else ()


def _check_output(
    source: str,
    subject: str,
    writer: str,
    at: str | None,
    read_on: Mapping[str | None, str],
    bridges: tuple[BridgeDecl, ...],
) -> None:
    """An output is read where it is emitted, or bridged from there to where it is read."""
    origin = _origin(subject, bridges)
    if origin is not None and origin != at:
        raise ConfigError(
            f"{source}: actor {writer!r} on site {at!r} emits {subject!r}, whose stream "
            f"[[bridges]] take from site {origin!r}: emit it on site {origin!r}, or bridge "
            f"it from site {at!r}"
        )
    bridged = {b.target for b in bridges if b.subject == subject}
    for site, reader in read_on.items():
        if site != at and site not in bridged:
            raise ConfigError(
                f"{source}: actor {writer!r} on site {at!r} emits {subject!r}, which actor "
                f"{reader!r} reads on site {site!r}, and no bridge joins them (each site would "
                f"keep a stream of its own); add a [[bridges]] entry with subject = "
                f"{subject!r}, from = {at!r}, to = {site!r}, or place both actors on one site"
            )


def _check_nodes(
    source: str,
    spec: SupervisorSpec,
    path: str,
    site: str | None,
    placements: Mapping[str, str],
    wheres: Mapping[str, str],
    node: str | None = None,
) -> None:
    for child in spec.children:
        child_path = f"{path}.{child.id}"
        child_site = placements.get(child_path, site)
        if node is not None and child_site != site:
            raise ConfigError(
                f"{source}: {wheres[child_path]}.site: {child_site!r} inside process node "
                f"{node!r}, which runs on site {site!r}: a process node connects to one "
                "site; place the node itself"
            )
        start: Any = child.start
        inner = node
        if isinstance(start, ProcessStart):
            inner = child_path
            start = start.target
        if isinstance(start, SupervisorSpec):
            _check_nodes(source, start, child_path, child_site, placements, wheres, inner)


def _origin(subject: str, bridges: tuple[BridgeDecl, ...]) -> str | None:
    """The site a bridged subject's stream comes from (``None``: not bridged)."""
    return next((b.source for b in bridges if b.subject == subject), None)
