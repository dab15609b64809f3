"""How a fabric proves who it is to NATS: credentials and TLS, as one value.

:class:`Auth` holds at most one way to authenticate (user and password, a
token, an nkey seed file or a ``.creds`` file with a user JWT) and an
optional :class:`Tls`. Secrets may come from environment variables
(``password_env``, ``token_env``) so they need not be written in files; they
are read when the fabric connects, not when the value is built. The same
schema is read from a workflow file's ``[fabric]`` table
(:meth:`Auth.from_mapping`).

>>> import os
>>> os.environ["DOC_APP_PASSWORD"] = "s3cret"
>>> auth = Auth(user="app", password_env="DOC_APP_PASSWORD")
>>> sorted(auth.connect_options())
['password', 'user']
>>> Auth(user="app", password="x", password_env="DOC_APP_PASSWORD")
Traceback (most recent call last):
...
diaspora.errors.ConfigError: auth: password and password_env are both set: keep one
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from diaspora._tomlfile import TomlReader
from diaspora.errors import AuthorizationFailed, ConfigError, DiasporaError

__all__ = ["AUTH_KEYS", "Auth", "Tls", "refusal"]

#: The keys of a ``[fabric]`` table that :meth:`Auth.from_mapping` reads (and ``tls``).
AUTH_KEYS: Final = frozenset(
    {"user", "password", "password_env", "token", "token_env", "nkey_seed_file", "creds_file"}
)
_TLS_KEYS: Final = frozenset({"ca_file", "cert_file", "key_file", "verify_hostname", "hostname"})


def _file(path: str | os.PathLike[str] | None, where: str, what: str) -> Path | None:
    if path is None:
        return None
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ConfigError(f"{where}: {os.fspath(path)!r} is not a readable file ({what})")
    return resolved


def _env(name: str, where: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(
            f"{where}: environment variable ${name} is not set (or empty): export it "
            "before starting, or give the secret another way"
        )
    return value


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS towards the server: a CA to trust, a client certificate, hostname checks.

    ``ca_file`` omitted: the system's trusted CAs. ``cert_file`` and
    ``key_file`` (both or neither) authenticate this client to a server that
    verifies clients. ``verify_hostname=False`` accepts a certificate for
    another name (a server reached by IP); ``hostname`` checks against that
    name instead of the URL's host.

    >>> Tls(cert_file=None, key_file=None).context().check_hostname
    True
    """

    ca_file: str | os.PathLike[str] | None = None
    cert_file: str | os.PathLike[str] | None = None
    key_file: str | os.PathLike[str] | None = None
    verify_hostname: bool = True
    hostname: str | None = None
    where: str = field(default="auth.tls", repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError(
                f"{self.where}: cert_file and key_file go together (a client certificate "
                "and its private key): give both or neither"
            )
        _file(self.ca_file, f"{self.where}.ca_file", "the CA certificate(s) to trust, PEM")
        _file(self.cert_file, f"{self.where}.cert_file", "the client certificate, PEM")
        _file(self.key_file, f"{self.where}.key_file", "the client's private key, PEM")

    def context(self) -> ssl.SSLContext:
        """The client-side SSL context these settings describe."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        try:
            if self.ca_file is not None:
                ctx.load_verify_locations(cafile=os.fspath(self.ca_file))
            if self.cert_file is not None and self.key_file is not None:
                ctx.load_cert_chain(os.fspath(self.cert_file), os.fspath(self.key_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{self.where}: cannot load the TLS files: {exc}") from exc
        ctx.check_hostname = self.verify_hostname
        return ctx


@dataclass(frozen=True, slots=True)
class Auth:
    """Credentials and TLS a :class:`~diaspora.fabric.Fabric` connects with.

    At most one of: ``user`` with ``password``/``password_env``; ``token``
    or ``token_env``; ``nkey_seed_file`` (an ``SU...`` seed); ``creds_file``
    (a user JWT and its seed, as ``nsc`` writes them). ``tls`` adds TLS to
    any of them (or stands alone). ``where`` prefixes error messages.

    >>> Auth(token="t0k3n").connect_options()
    {'token': 't0k3n'}
    """

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    password_env: str | None = None
    token: str | None = field(default=None, repr=False)
    token_env: str | None = None
    nkey_seed_file: str | os.PathLike[str] | None = None
    creds_file: str | os.PathLike[str] | None = None
    tls: Tls | None = None
    where: str = field(default="auth", repr=False, compare=False)

    def __post_init__(self) -> None:
        w = self.where
        for a, b in (("password", "password_env"), ("token", "token_env")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise ConfigError(f"{w}: {a} and {b} are both set: keep one")
        has_password = self.password is not None or self.password_env is not None
        if has_password and not self.user:
            raise ConfigError(f"{w}: a password needs a user: set user too")
        if self.user is not None and not has_password:
            raise ConfigError(f"{w}: user {self.user!r} has no password: set password_env")
        methods = [
            name
            for name, used in (
                ("user", self.user is not None),
                ("token", self.token is not None or self.token_env is not None),
                ("nkey_seed_file", self.nkey_seed_file is not None),
                ("creds_file", self.creds_file is not None),
            )
            if used
        ]
        if len(methods) > 1:
            raise ConfigError(
                f"{w}: {' and '.join(methods)} are both set: a connection authenticates "
                "one way, keep one"
            )
        _file(self.nkey_seed_file, f"{w}.nkey_seed_file", "an nkey seed, SU...")
        _file(self.creds_file, f"{w}.creds_file", "a NATS .creds file: user JWT and seed")

    @classmethod
    def from_mapping(
        cls, table: Mapping[str, Any], *, where: str, base_dir: Path | None = None
    ) -> Auth | None:
        """The auth keys of a ``[fabric]`` table (others are ignored); ``None`` if none.

        ``where`` is ``"<file>: fabric"``; relative file paths are taken from
        ``base_dir`` (the workflow file's folder).
        """
        source, _, path = where.rpartition(": ")
        reader = TomlReader(source or "<config>")
        reader.non_empty_strings = True
        values: dict[str, Any] = {}
        for key in sorted(AUTH_KEYS & table.keys()):
            values[key] = reader.string(table[key], f"{path}.{key}")
        for key in ("nkey_seed_file", "creds_file"):
            if key in values:
                values[key] = _relative(values[key], base_dir)
        tls = None
        if "tls" in table:
            raw = reader.table(table["tls"], f"{path}.tls")
            reader.keys(raw, f"{path}.tls", _TLS_KEYS)
            fields: dict[str, Any] = {}
            for key in ("ca_file", "cert_file", "key_file"):
                if key in raw:
                    fields[key] = _relative(reader.string(raw[key], f"{path}.tls.{key}"), base_dir)
            if "hostname" in raw:
                fields["hostname"] = reader.string(raw["hostname"], f"{path}.tls.hostname")
            if "verify_hostname" in raw:
                fields["verify_hostname"] = reader.boolean(
                    raw["verify_hostname"], f"{path}.tls.verify_hostname"
                )
            tls = Tls(**fields, where=f"{where}.tls")
        if not values and tls is None:
            return None
        return cls(**values, tls=tls, where=where)

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for nats-py's ``connect``, secrets read from the environment now."""
        w = self.where
        options: dict[str, Any] = {}
        if self.user is not None:
            options["user"] = self.user
            options["password"] = (
                self.password
                if self.password is not None
                else _env(str(self.password_env), f"{w}.password_env")
            )
        if self.token is not None:
            options["token"] = self.token
        elif self.token_env is not None:
            options["token"] = _env(self.token_env, f"{w}.token_env")
        if self.nkey_seed_file is not None:
            options["nkeys_seed"] = os.fspath(self.nkey_seed_file)
        if self.creds_file is not None:
            options["user_credentials"] = os.fspath(self.creds_file)
        if self.tls is not None:
            options["tls"] = self.tls.context()
            if self.tls.hostname is not None:
                options["tls_hostname"] = self.tls.hostname
        return options

    def describe(self) -> str:
        """How this connects, without secrets (``"user 'app'"``, ``"creds file x.creds"``)."""
        parts = []
        if self.user is not None:
            parts.append(f"user {self.user!r}")
        if self.token is not None or self.token_env is not None:
            parts.append("a token")
        if self.nkey_seed_file is not None:
            parts.append(f"nkey seed {os.fspath(self.nkey_seed_file)}")
        if self.creds_file is not None:
            parts.append(f"creds file {os.fspath(self.creds_file)}")
        if self.tls is not None:
            parts.append("TLS")
        return " with ".join(parts) or "no credentials"


def _relative(path: str, base_dir: Path | None) -> str:
    expanded = Path(path).expanduser()
    if base_dir is None or expanded.is_absolute():
        return os.fspath(expanded)
    return os.fspath(base_dir / expanded)


def refusal(exc: BaseException, urls: list[str], auth: Auth | None) -> DiasporaError | None:
    """The error for a connect the server refused for good (credentials, TLS), else ``None``.

    nats-py reports these through its error callback and keeps retrying;
    retrying cannot fix them, so the first connect fails at once instead.
    """
    how = auth.describe() if auth is not None else "no credentials"
    where = ",".join(urls)
    if type(exc).__name__ == "AuthorizationError" or "authorization violation" in str(exc).lower():
        return AuthorizationFailed(
            f"NATS at {where} refused the connection: authorization failed for {how}; "
            "check the user, password, token, nkey or creds the fabric connects with "
            "([fabric] in the workflow file, or Fabric(auth=...))"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return AuthorizationFailed(
            f"NATS at {where}: TLS certificate not accepted ({exc.verify_message}); "
            "set tls.ca_file to the CA that signed the server's certificate, or "
            "tls.hostname to the name in it"
        )
    if isinstance(exc, ssl.SSLError):
        return AuthorizationFailed(
            f"NATS at {where}: TLS handshake failed ({exc}); check tls.cert_file and "
            "tls.key_file against what the server requires"
        )
    return None
