"""What a hierarchical fabric is made of: sites, each a JetStream domain, linked to a parent.

A :class:`SiteSpec` declares one site; :func:`check_sites` checks a whole
topology before anything starts (unique names and domains, domains that can
be subject tokens, parents that exist, no cycles) and orders it root first,
the order in which servers start (children's leaf links need their parent's
listener) and the reverse of the order in which they stop.

>>> order = check_sites([
...     SiteSpec("edge", domain="edge", parent="hpc"),
...     SiteSpec("hpc", domain="hpc", parent="cloud"),
...     SiteSpec("cloud", domain="cloud"),
... ])
>>> [site.name for site in order]
['cloud', 'hpc', 'edge']
>>> check_sites([SiteSpec("a", domain="x", parent="b"), SiteSpec("b", domain="y", parent="a")])
Traceback (most recent call last):
diaspora.errors.ConfigError: sites.a.parent: 'b' makes a cycle (a -> b -> a); ...
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from diaspora.errors import ConfigError
from diaspora.fabric._auth import Auth
from diaspora.fabric._leafnodes import check_leaf_url
from diaspora.fabric._serverauth import Account
from diaspora.fabric._sitesecurity import check_link, check_site_security

__all__ = ["SiteSpec", "check_sites"]

_TOKEN: Final = re.compile(r"^[A-Za-z0-9_\-]+$")


def _check_token(value: object, where: str, what: str) -> None:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise ConfigError(
            f"{where}: {value!r} is not a valid {what}; use letters, digits, '_' or '-' "
            "(it becomes one token of NATS subjects such as $JS.<domain>.API)"
        )


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """One site of a hierarchical fabric: a server (or cluster) with its own JetStream domain.

    ``url`` is the client URL of a server that already runs there; ``None``
    starts an embedded one. ``parent`` names the site this one keeps a leaf
    link to. ``store_dir`` overrides where an embedded server keeps its
    streams (default ``<state_dir>/<name>/jetstream``). ``leaf_url`` is, for
    a site with a ``url``, where embedded children's leaf links connect (its
    ``leafnodes`` listener). ``auth`` is the credentials and TLS clients of
    this site connect with (:class:`~diaspora.fabric.Auth`).

    >>> SiteSpec("edge", domain="edge", parent="hpc").embedded
    True
    """

    name: str
    domain: str
    url: str | None = None
    parent: str | None = None
    store_dir: str | os.PathLike[str] | None = None
    leaf_url: str | None = None
    #: put a :class:`~diaspora.fabric.LinkProxy` on this site's uplink, obeying fault orders
    #: on ``diaspora.control.link.<name>.fault`` (an embedded site with a parent only)
    link_proxy: bool = False
    auth: Auth | None = None
    accounts: Mapping[str, Account | Mapping[str, Any]] | None = None
    link_auth: Auth | None = None

    def __post_init__(self) -> None:
        _check_token(self.name, f"sites.{self.name}", "site name")
        where = f"sites.{self.name}"
        _check_token(self.domain, f"{where}.domain", "JetStream domain")
        if self.parent is not None:
            _check_token(self.parent, f"{where}.parent", "site name")
        if self.url is not None and (not isinstance(self.url, str) or not self.url.strip()):
            raise ConfigError(f"{where}.url: {self.url!r} names no server; omit it for embedded")
        if self.leaf_url is not None:
            if self.url is None:
                raise ConfigError(
                    f"{where}.leaf_url: only a site with a url takes one (an embedded "
                    "site's leaf listener is chosen when it starts)"
                )
            check_leaf_url(self.leaf_url, where=f"{where}.leaf_url")
        if self.link_proxy and (self.url is not None or self.parent is None):
            raise ConfigError(
                f"{where}.link.proxy: only an embedded site with a parent has an uplink that "
                "Diaspora can put a proxy on"
            )
        if self.store_dir is not None and self.url is not None:
            raise ConfigError(
                f"{where}.store_dir: a site with a url keeps its store on its own server; "
                "drop store_dir or the url"
            )
        check_site_security(self)

    @property
    def embedded(self) -> bool:
        """Whether Diaspora starts this site's server (no ``url``)."""
        return self.url is None


def check_sites(specs: Iterable[SiteSpec]) -> tuple[SiteSpec, ...]:
    """The sites ordered parents before children, or :class:`ConfigError` naming site and field."""
    by_name: dict[str, SiteSpec] = {}
    domains: dict[str, str] = {}
    for spec in specs:
        if not isinstance(spec, SiteSpec):
            raise ConfigError(f"sites: {spec!r} is not a SiteSpec")
        if spec.name in by_name:
            raise ConfigError(f"sites.{spec.name}: declared twice; site names must be unique")
        if spec.domain in domains:
            raise ConfigError(
                f"sites.{spec.name}.domain: {spec.domain!r} is already the domain of site "
                f"{domains[spec.domain]!r}; every site needs its own JetStream domain"
            )
        by_name[spec.name] = spec
        domains[spec.domain] = spec.name
    if not by_name:
        raise ConfigError("sites: no site declared; declare at least one")
    for spec in by_name.values():
        _check_parent(spec, by_name)
    order: list[SiteSpec] = []
    placed: set[str] = set()

    def place(spec: SiteSpec) -> None:
        if spec.name in placed:
            return
        if spec.parent is not None:
            place(by_name[spec.parent])
        placed.add(spec.name)
        order.append(spec)

    for spec in by_name.values():
        place(spec)
    return tuple(order)


def _check_parent(spec: SiteSpec, by_name: dict[str, SiteSpec]) -> None:
    where = f"sites.{spec.name}.parent"
    if spec.parent is None:
        return
    if spec.parent not in by_name:
        raise ConfigError(
            f"{where}: no site {spec.parent!r} is declared (sites: {', '.join(sorted(by_name))})"
        )
    path = [spec.name]
    current: SiteSpec | None = by_name[spec.parent]
    while current is not None and current.name not in path[1:]:
        path.append(current.name)
        if current.name == spec.name:
            raise ConfigError(
                f"{where}: {spec.parent!r} makes a cycle ({' -> '.join(path)}); "
                "one site must have no parent"
            )
        current = by_name[current.parent] if current.parent is not None else None
    parent = by_name[spec.parent]
    check_link(spec, parent)
    if spec.embedded and not parent.embedded and parent.leaf_url is None:
        raise ConfigError(
            f"{where}: site {parent.name!r} has a url but no leaf_url; give it the "
            "nats-leaf:// URL of its leafnodes listener so this site can link to it"
        )
    if not spec.embedded and parent.embedded:
        raise ConfigError(
            f"{where}: site {spec.name!r} has a url but its parent {parent.name!r} is "
            "embedded, whose leaf port is only chosen when it starts; give the parent a "
            "url too, or drop this site's url"
        )
