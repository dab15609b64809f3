"""The ``leafnodes`` block of an embedded server's config: how sites are linked.

A site's server listens for leaf links from its children on a loopback port
(``no_advertise``: a child only ever uses the URL it was given, so a proxy
put in between stays in between) and keeps one leaf link per remote, retried
every second while the parent is away. Events and dead letters stay on their
site (:data:`SITE_LOCAL`): the link passes neither.

>>> lines = leafnodes_config(7422, ["nats-leaf://127.0.0.1:7423"])
>>> print("\\n".join(lines[:5] + lines[6:]))
leafnodes {
  listen: "127.0.0.1:7422"
  no_advertise: true
  reconnect: "1s"
  remotes: [
  ]
}
>>> lines[5].split(", deny_imports")[0]
'    { url: "nats-leaf://127.0.0.1:7423"'
>>> leaf_url(7422)
'nats-leaf://127.0.0.1:7422'
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from diaspora.errors import ConfigError

__all__ = [
    "LEAF_SCHEMES",
    "SITE_LOCAL",
    "LeafRemote",
    "check_leaf_url",
    "check_remote",
    "leaf_url",
    "leafnodes_config",
]

#: Subjects that stay on their site: every site's server keeps its own events and dead-letter
#: streams on them, so a link passing them on would have both domains store each message
#: (``hierarchy.md`` G6). A bridge moves them between sites when wanted.
SITE_LOCAL: Final = ("diaspora.events.>", "diaspora.dlq.>")
#: URL schemes nats-server accepts for a leaf remote.
LEAF_SCHEMES: Final = ("nats-leaf", "nats", "tls", "ws", "wss")
_LOOPBACK: Final = "127.0.0.1"


def leaf_url(port: int, host: str = _LOOPBACK) -> str:
    """The URL a child site's leaf remote uses to reach a leaf listener on ``port``."""
    return f"nats-leaf://{host}:{port}"


def check_leaf_url(url: str, *, where: str) -> str:
    """``url`` if it can be a leaf remote (scheme, host and port), else :class:`ConfigError`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: {url!r} is not a URL ({exc})") from None
    if parts.scheme not in LEAF_SCHEMES or not parts.hostname or port is None:
        raise ConfigError(
            f"{where}: {url!r} is not a leaf-node URL; write nats-leaf://<host>:<leaf port> "
            "(the parent server's leafnodes listener, not its client port)"
        )
    return url


@dataclass(frozen=True, slots=True)
class LeafRemote:
    """A leaf link to a parent that asks for credentials: a user and password (put in the
    URL), or a ``.creds`` file; ``account`` is the local account the link carries (its
    JetStream domain reaches the parent's only through an account with JetStream).

    >>> LeafRemote.with_password("nats-leaf://127.0.0.1:7422", "leaf", "p@ss").url
    'nats-leaf://leaf:p%40ss@127.0.0.1:7422'
    """

    url: str
    account: str | None = None
    credentials: str | os.PathLike[str] | None = None

    @classmethod
    def with_password(
        cls, url: str, user: str, password: str, account: str | None = None
    ) -> LeafRemote:
        """The link to ``url`` authenticating as ``user`` with ``password``."""
        parts = urlsplit(url)
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
        return cls(urlunsplit(parts._replace(netloc=netloc)), account)

    def render(self) -> str:
        local = json.dumps(list(SITE_LOCAL))
        extra = "" if self.account is None else f", account: {json.dumps(self.account)}"
        if self.credentials is not None:
            extra += f", credentials: {json.dumps(os.fspath(self.credentials))}"
        return (
            f"{{ url: {json.dumps(self.url)}{extra}, deny_imports: {local}, "
            f"deny_exports: {local} }}"
        )


def check_remote(remote: str | LeafRemote, *, where: str) -> LeafRemote:
    """``remote`` as a :class:`LeafRemote` whose URL can be a leaf remote."""
    value = remote if isinstance(remote, LeafRemote) else LeafRemote(remote)
    check_leaf_url(value.url, where=where)
    return value


def leafnodes_config(port: int | None, remotes: Sequence[str | LeafRemote]) -> list[str]:
    """Config lines for a leaf listener on loopback ``port`` and leaf links to ``remotes``."""
    if port is None and not remotes:
        return []
    lines = ["leafnodes {"]
    if port is not None:
        lines += [f'  listen: "{_LOOPBACK}:{port}"', "  no_advertise: true"]
    if remotes:
        lines += ['  reconnect: "1s"', "  remotes: ["]
        lines += [f"    {check_remote(r, where='leaf_remotes').render()}" for r in remotes]
        lines.append("  ]")
    lines.append("}")
    return lines
