"""Who may connect to an embedded ``nats-server``, and what they may do there.

Value types for the server side of security — :class:`User` (password,
token or nkey, with publish/subscribe permissions), :class:`Account` (an
isolated subject and stream namespace, JetStream on or off) and
:class:`ServerTls` — and :func:`render_security`, which turns them into the
``authorization``/``accounts``/``tls`` blocks of the server's config.
:func:`workflow_permissions` is the smallest permission set an actor needs
for its own subjects (measured against a real server; see docs/fabric.md).

>>> print(render_security(users=[User("app", password="pw")]))
authorization {
  users: [
    {user: "app", password: "pw"}
  ]
}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from diaspora.errors import ConfigError
from diaspora.fabric._naming import check_subject

__all__ = [
    "Account",
    "Permissions",
    "ServerTls",
    "User",
    "render_security",
    "workflow_permissions",
]

#: The system account of an accounts setup (monitoring and server events live there).
SYSTEM_ACCOUNT: Final = "SYS"

#: What a Diaspora actor publishes besides its workflow's subjects, measured with a real
#: server (docs/fabric.md, "Security"): the JetStream API calls it makes (account info;
#: stream names, info, create, update, message get and purge — the object store purges
#: replaced chunks; consumers), acks and flow control, KV and object-store writes, and the
#: framework's own ``diaspora.>`` subjects (events, dead letters, control, replay).
#: Not granted: deleting streams, listing them, or anything else of the account's API.
_FRAMEWORK_PUBLISH: Final = (
    "$JS.API.INFO",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.CREATE.*",
    "$JS.API.STREAM.UPDATE.*",
    "$JS.API.STREAM.MSG.GET.*",
    "$JS.API.STREAM.PURGE.*",
    "$JS.API.DIRECT.GET.>",
    "$JS.API.CONSUMER.>",
    "$JS.ACK.>",
    "$JS.FC.>",
    "$KV.>",
    "$O.>",
    "diaspora.>",
)
#: What it subscribes to: replies (``_INBOX.>``) and the framework's subjects.
_FRAMEWORK_SUBSCRIBE: Final = ("_INBOX.>", "diaspora.>")


@dataclass(frozen=True, slots=True)
class Permissions:
    """Subjects a user may publish and subscribe to (``None``: anything)."""

    publish: tuple[str, ...] | None = None
    subscribe: tuple[str, ...] | None = None


def workflow_permissions(*subjects: str) -> Permissions:
    """The permissions of a workflow's user: its own ``subjects`` (each may end in ``.>``),
    plus what the framework needs to run actors on them (JetStream, KV, object store,
    replies, ``diaspora.>``) — and nothing else.

    >>> workflow_permissions("wf.>").publish[0]
    'wf.>'
    """
    if not subjects:
        raise ConfigError("workflow_permissions: name at least one subject (e.g. 'wf.>')")
    for subject in subjects:
        check_subject(subject.removesuffix(".>"), where="workflow_permissions")
    return Permissions(
        publish=(*subjects, *_FRAMEWORK_PUBLISH), subscribe=(*subjects, *_FRAMEWORK_SUBSCRIBE)
    )


@dataclass(frozen=True, slots=True)
class User:
    """One client identity: ``user`` with ``password``, or ``token``, or ``nkey`` (public key).

    >>> User("app", password="pw", permissions=workflow_permissions("wf.>")).user
    'app'
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    nkey: str | None = None
    permissions: Permissions | None = None

    def __post_init__(self) -> None:
        ways = sum(x is not None for x in (self.password, self.token, self.nkey))
        if ways != 1 or (self.password is not None) != (self.user is not None):
            raise ConfigError(
                f"EmbeddedServer user {self.user or '?'!r}: give exactly one of "
                "user with password, token, or nkey"
            )
        if self.nkey is not None and not self.nkey.startswith("U"):
            raise ConfigError(
                f"EmbeddedServer user nkey {self.nkey[:6]!r}...: a user's public nkey starts "
                "with 'U' (give the public key here, the seed 'SU...' to the client)"
            )

    def render(self) -> str:
        parts: list[str] = []
        if self.user is not None:
            parts += [f"user: {json.dumps(self.user)}", f"password: {json.dumps(self.password)}"]
        if self.nkey is not None:
            parts.append(f"nkey: {json.dumps(self.nkey)}")
        if self.permissions is not None:
            perms = []
            for verb, subjects in (
                ("publish", self.permissions.publish),
                ("subscribe", self.permissions.subscribe),
            ):
                if subjects is not None:
                    perms.append(f"{verb}: {{allow: {json.dumps(list(subjects))}}}")
            parts.append(f"permissions: {{{', '.join(perms)}}}")
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True, slots=True)
class Account:
    """An isolated namespace: its users see only its subjects and streams."""

    users: tuple[User, ...]
    jetstream: bool = True


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The server's certificate, and (``verify``) whether clients must show one from ``ca_file``."""

    cert_file: str | os.PathLike[str]
    key_file: str | os.PathLike[str]
    ca_file: str | os.PathLike[str] | None = None
    verify: bool = False

    def __post_init__(self) -> None:
        if self.verify and self.ca_file is None:
            raise ConfigError("EmbeddedServer tls: verify=True needs ca_file (the clients' CA)")

    def render(self) -> str:
        lines = [
            "tls {",
            f"  cert_file: {json.dumps(os.fspath(self.cert_file))}",
            f"  key_file: {json.dumps(os.fspath(self.key_file))}",
        ]
        if self.ca_file is not None:
            lines.append(f"  ca_file: {json.dumps(os.fspath(self.ca_file))}")
        if self.verify:
            lines.append("  verify: true")
        return "\n".join([*lines, "}"])


def as_user(value: User | Mapping[str, Any], where: str) -> User:
    """A :class:`User`, from itself or a mapping (``publish``/``subscribe`` lists allowed)."""
    if isinstance(value, User):
        return value
    fields = dict(value)
    publish, subscribe = fields.pop("publish", None), fields.pop("subscribe", None)
    if publish is not None or subscribe is not None:
        fields["permissions"] = Permissions(
            tuple(publish) if publish is not None else None,
            tuple(subscribe) if subscribe is not None else None,
        )
    try:
        return User(**fields)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def as_account(value: Account | Mapping[str, Any], where: str) -> Account:
    if isinstance(value, Account):
        return value
    unknown = set(value) - {"users", "jetstream"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected users, jetstream")
    users = tuple(as_user(u, f"{where}.users[{i}]") for i, u in enumerate(value.get("users", ())))
    return Account(users=users, jetstream=bool(value.get("jetstream", True)))


def render_security(
    *,
    users: Sequence[User | Mapping[str, Any]] = (),
    accounts: Mapping[str, Account | Mapping[str, Any]] | None = None,
    tls: ServerTls | None = None,
) -> str:
    """The config blocks for these users, accounts and TLS (``""``: none, anyone may connect).

    With ``accounts``, a system account ``SYS`` is added (no users) unless one is given.
    """
    blocks: list[str] = []
    if users and accounts:
        raise ConfigError(
            "EmbeddedServer: users= and accounts= both given: put the users in an account"
        )
    checked = [as_user(u, f"users[{i}]") for i, u in enumerate(users)]
    tokens = [u for u in checked if u.token is not None]
    if tokens and (len(checked) > 1 or tokens[0].permissions is not None):
        raise ConfigError(
            "EmbeddedServer: a token is the server's single shared secret: give it as "
            "the only user, without permissions (or give users passwords or nkeys)"
        )
    if tokens:
        blocks.append(f"authorization {{\n  token: {json.dumps(tokens[0].token)}\n}}")
    elif checked:
        rendered = ",\n".join(f"    {u.render()}" for u in checked)
        blocks.append(f"authorization {{\n  users: [\n{rendered}\n  ]\n}}")
    if accounts:
        lines = ["accounts {"]
        for name, raw in accounts.items():
            account = as_account(raw, f"accounts.{name}")
            if any(u.token is not None for u in account.users):
                raise ConfigError(
                    f"EmbeddedServer: accounts.{name}: a token cannot name an account's "
                    "user: give its users passwords or nkeys"
                )
            entries = ", ".join(u.render() for u in account.users)
            js = "jetstream: enabled, " if account.jetstream else ""
            lines.append(f"  {json.dumps(name)}: {{ {js}users: [{entries}] }}")
        if SYSTEM_ACCOUNT not in accounts:
            lines.append(f"  {SYSTEM_ACCOUNT}: {{ users: [] }}")
        lines.append("}")
        blocks += ["\n".join(lines), f"system_account: {SYSTEM_ACCOUNT}"]
    if tls is not None:
        blocks.append(tls.render())
    return "\n".join(blocks)
