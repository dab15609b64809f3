"""Secured sites: who may connect to an embedded site, and what its leaf link presents.

An embedded site with ``auth`` (a user with a password) or ``accounts`` runs
an accounts setup: its clients and the leaf links of its children must
authenticate (nats-server asks leaf connections for the credentials of a user
of one of its accounts, and binds the link to that user's account). A child
presents its ``link_auth``; the link carries the child's own account, so the
two JetStream domains reach each other through accounts that both have
JetStream (``hierarchy.md`` §2, G8). Secrets from ``password_env`` are read
when the site starts.

>>> from diaspora.fabric import Auth, SiteSpec
>>> spec = SiteSpec("hpc", domain="hpc", auth=Auth(user="app", password="pw"))
>>> list(server_accounts(spec)), site_account(spec)
(['DIASPORA'], 'DIASPORA')
>>> edge = SiteSpec("edge", domain="edge", parent="hpc")
>>> check_link(edge, spec)
Traceback (most recent call last):
...
diaspora.errors.ConfigError: sites.edge.link: site 'hpc' asks its leaf links for credentials ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from diaspora.errors import AuthorizationFailed, ConfigError
from diaspora.fabric._leafnodes import LeafRemote
from diaspora.fabric._serverauth import SYSTEM_ACCOUNT, Account, User, as_account

if TYPE_CHECKING:
    from diaspora.fabric._sitespec import SiteSpec

__all__ = [
    "DEFAULT_ACCOUNT",
    "check_link",
    "check_site_security",
    "leaf_remote",
    "link_refused",
    "refused_error",
    "secured",
    "server_accounts",
    "site_account",
]

#: The account an embedded site with ``auth`` but no ``accounts`` puts its user in.
DEFAULT_ACCOUNT: Final = "DIASPORA"
#: What a child's server logs when its parent refuses the leaf link's credentials.
_REFUSED: Final = "Leafnode Error 'Authorization Violation'"
#: What it logs once a leaf link is up between two JetStream domains.
_LINKED: Final = "JetStream using domains"


def check_site_security(spec: SiteSpec) -> None:
    """Refuse what an embedded server or a leaf link cannot do, naming the field."""
    where = f"sites.{spec.name}"
    if spec.accounts is not None and not spec.embedded:
        raise ConfigError(
            f"{where}.accounts: a site with a url keeps its accounts on its own server; "
            "drop accounts (give auth= the credentials its clients use)"
        )
    if spec.embedded and spec.auth is not None and spec.auth.tls is not None:
        raise ConfigError(
            f"{where}.tls: an embedded site serves no TLS (it listens on loopback only); "
            "drop tls, or run the server yourself and give its url"
        )
    embedded_auth = spec.auth if spec.embedded and spec.accounts is None else None
    if embedded_auth is not None and embedded_auth.user is None:
        raise ConfigError(
            f"{where}: an embedded site secures its server with a user and password "
            "(password_env); give user= and password_env=, or accounts= with nkey users"
        )
    if spec.link_auth is not None:
        if spec.parent is None:
            raise ConfigError(f"{where}.link: a site without a parent has no leaf link")
        if spec.link_auth.user is None and spec.link_auth.creds_file is None:
            raise ConfigError(
                f"{where}.link: a leaf link authenticates with a user and password "
                "(password_env) or a creds_file; give one of them"
            )
        if spec.link_auth.tls is not None:
            raise ConfigError(f"{where}.link.tls: TLS on leaf links is not supported; drop it")
    if spec.accounts is not None:
        site_account(spec)  # an account to run the workflow (and carry the link) in


def secured(spec: SiteSpec) -> bool:
    """Whether the site's (embedded) server asks for credentials, leaf links included."""
    return spec.embedded and (spec.accounts is not None or spec.auth is not None)


def server_accounts(spec: SiteSpec) -> dict[str, Account] | None:
    """The accounts of an embedded site's server (``None``: open, anyone on loopback).

    Reads ``password_env`` now: call it when the site starts.
    """
    where = f"sites.{spec.name}"
    if not spec.embedded:
        return None
    if spec.accounts is not None:
        return {
            name: as_account(raw, f"{where}.accounts.{name}") for name, raw in spec.accounts.items()
        }
    if spec.auth is None or spec.auth.user is None:
        return None
    password = spec.auth.connect_options()["password"]
    return {DEFAULT_ACCOUNT: Account(users=(User(spec.auth.user, password=password),))}


def site_account(spec: SiteSpec) -> str | None:
    """The account the site's workflow runs in, and its leaf link carries."""
    if spec.accounts is None:
        return DEFAULT_ACCOUNT if secured(spec) else None
    accounts = {
        n: as_account(a, f"sites.{spec.name}.accounts.{n}") for n, a in spec.accounts.items()
    }
    user = spec.auth.user if spec.auth is not None else None
    if user is not None:
        owner = [n for n, a in accounts.items() if any(u.user == user for u in a.users)]
        if owner:
            return owner[0]
    candidates = [n for n, a in accounts.items() if a.jetstream and n != SYSTEM_ACCOUNT]
    if len(candidates) == 1:
        return candidates[0]
    raise ConfigError(
        f"sites.{spec.name}.auth: cannot tell which account of {sorted(accounts)} the site's "
        "workflow and leaf link use; give auth= the user (and password) of one of them"
    )


def check_link(spec: SiteSpec, parent: SiteSpec) -> None:
    """A child of a secured embedded parent must present credentials on its leaf link."""
    if spec.embedded and secured(parent) and spec.link_auth is None:
        raise ConfigError(
            f"sites.{spec.name}.link: site {parent.name!r} asks its leaf links for "
            f"credentials (its server has accounts); give this site's link the user and "
            f"password_env of a user of {parent.name!r}'s account "
            f"(link = {{ user = ..., password_env = ... }})"
        )


def leaf_remote(url: str, spec: SiteSpec) -> LeafRemote:
    """The leaf remote of ``spec``'s server to its parent at ``url``.

    Reads ``password_env`` now: call it when the site starts.
    """
    account = site_account(spec)
    link = spec.link_auth
    if link is None:
        return LeafRemote(url, account)
    if link.creds_file is not None:
        return LeafRemote(url, account, credentials=link.creds_file)
    options = link.connect_options()
    return LeafRemote.with_password(url, options["user"], options["password"], account)


def link_refused(log: str) -> bool:
    """Whether a child server's log shows its leaf link refused since the link was last up."""
    return log.rfind(_REFUSED) > log.rfind(_LINKED)


def refused_error(spec: SiteSpec, parent: SiteSpec) -> AuthorizationFailed:
    """The error for a leaf link whose credentials ``parent`` refused."""
    link = spec.link_auth
    how = link.describe() if link is not None else "no credentials"
    env = f" (is ${link.password_env} right?)" if link and link.password_env else ""
    return AuthorizationFailed(
        f"sites.{spec.name}.link: site {parent.name!r} refused the leaf link's credentials "
        f"({how}): authorization violation; give the link the user and password of a user "
        f"of site {parent.name!r}'s account{env}"
    )
