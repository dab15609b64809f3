"""A throwaway NATS operator for tests: signed operator, account and user JWTs, a .creds file.

Enough of the decentralized-auth JWT format for ``nats-server`` in operator
mode with a memory resolver: an operator signs a system account and one
JetStream account; the account signs users. Test code only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nkeys

_UNLIMITED = {"subs": -1, "data": -1, "payload": -1, "conn": -1, "leaf": -1}
_JETSTREAM = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True)
class Key:
    seed: bytes
    pair: Any

    @classmethod
    def new(cls, prefix: int) -> Key:
        seed = nkeys.encode_seed(os.urandom(32), prefix)
        return cls(seed, nkeys.from_seed(bytearray(seed)))

    @property
    def public(self) -> str:
        return str(self.pair.public_key.decode())

    def sign_jwt(self, subject: str, name: str, claims: dict[str, Any]) -> str:
        body: dict[str, Any] = {
            "iat": int(time.time()),
            "iss": self.public,
            "name": name,
            "sub": subject,
            "nats": {"version": 2, **claims},
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
        body["jti"] = base64.b32encode(digest).decode().rstrip("=")
        head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
        payload = _b64(json.dumps(body).encode())
        signature = _b64(self.pair.sign(f"{head}.{payload}".encode()))
        return f"{head}.{payload}.{signature}"


class Operator:
    """An operator with a system account and the JetStream account ``WF``."""

    def __init__(self) -> None:
        self.key = Key.new(nkeys.PREFIX_BYTE_OPERATOR)
        self.system = Key.new(nkeys.PREFIX_BYTE_ACCOUNT)
        self.account = Key.new(nkeys.PREFIX_BYTE_ACCOUNT)

    def server_config(self) -> str:
        """The config lines that put a server in operator mode with these accounts."""
        operator = self.key.sign_jwt(self.key.public, "test-operator", {"type": "operator"})
        system = self.key.sign_jwt(
            self.system.public, "SYS", {"type": "account", "limits": _UNLIMITED}
        )
        account = self.key.sign_jwt(
            self.account.public,
            "WF",
            {"type": "account", "limits": {**_UNLIMITED, **_JETSTREAM}},
        )
        return "\n".join(
            [
                f"operator: {operator}",
                "resolver: MEMORY",
                "resolver_preload: {",
                f"  {self.system.public}: {system}",
                f"  {self.account.public}: {account}",
                "}",
                f"system_account: {self.system.public}",
            ]
        )

    def creds(self, path: Path, name: str = "app", *, signer: Key | None = None) -> Path:
        """Write a .creds file for a new user of ``WF`` (signed by ``signer``: another key
        makes credentials the server must refuse)."""
        user = Key.new(nkeys.PREFIX_BYTE_USER)
        token = (signer or self.account).sign_jwt(
            user.public,
            name,
            {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1},
        )
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n"
            f"{token}\n"
            "------END NATS USER JWT------\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{user.seed.decode()}\n"
            "------END USER NKEY SEED------\n"
        )
        return path
