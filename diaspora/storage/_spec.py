"""A storage bucket declared as data, for settings: which sites, which bucket, which policy.

Other layers keep a :class:`StorageSpec` (an actor's ``checkpoint_storage``)
and open a :class:`~diaspora.storage.Storage` from it on a fabric when they
need one; :meth:`StorageSpec.as_dict` is what they record beside what they
stored, so a reader rebuilds the same spec without the setting.

>>> spec = StorageSpec({"hub": "hub", "a": "a"}, bucket="ckpt", policy=Policy(layout="rs:1+1"))
>>> StorageSpec.from_dict(spec.as_dict()) == spec
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diaspora.errors import ConfigError
from diaspora.storage._policy import Policy

if TYPE_CHECKING:
    from diaspora.fabric import Fabric
    from diaspora.storage._store import Storage

__all__ = ["StorageSpec"]

_POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(Policy) if f.init)
_TABLE_KEYS = ("sites", "bucket", "policy", "meta")
_TABLE_NAMES = ", ".join(_TABLE_KEYS)


@dataclass(frozen=True)
class StorageSpec:
    """Site name → JetStream domain, the bucket, its policy and where its manifests live."""

    sites: Mapping[str, str]
    bucket: str = "default"
    policy: Policy = field(default_factory=Policy)
    #: The first of the ``2 * lose + 1`` manifest sites (default: the first site).
    meta: str | None = None

    def __post_init__(self) -> None:
        if not self.sites:
            raise ConfigError(f"storage spec {self.bucket!r}: sites: name at least one site")
        object.__setattr__(self, "sites", dict(self.sites))

    def __hash__(self) -> int:
        return hash((tuple(self.sites.items()), self.bucket, self.policy, self.meta))

    def open(self, fabric: Fabric, *, here: str | None = None) -> Storage:
        """A :class:`Storage` of this spec on ``fabric`` (enter it with ``async with``)."""
        from diaspora.storage._store import Storage

        meta = self.meta or next(iter(self.sites))
        return Storage(
            fabric, self.sites, bucket=self.bucket, policy=self.policy, meta=meta, here=here
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for a record): sites, bucket, meta and the policy's fields."""
        policy = {name: getattr(self.policy, name) for name in _POLICY_FIELDS}
        return {
            "sites": dict(self.sites),
            "bucket": self.bucket,
            "meta": self.meta,
            "policy": policy,
        }

    @classmethod
    def from_table(cls, raw: object, at: str) -> StorageSpec:
        """The spec of a workflow file's table ``{sites, bucket, policy, meta}``; errors start
        with ``at`` (file and field) and name the key.

        >>> spec = StorageSpec.from_table(
        ...     {"sites": {"hub": "hub", "a": "a"}, "bucket": "ck", "policy": {"layout": "rep:2"}},
        ...     "flow.toml: supervisor.children[0].checkpoint_storage")
        >>> spec.bucket, str(spec.policy.layout_for(1 << 30))
        ('ck', 'rep:2')
        >>> StorageSpec.from_table({"sites": {"a": "a"}, "bucket": 3}, "flow.toml: x")
        Traceback (most recent call last):
        diaspora.errors.ConfigError: flow.toml: x.bucket: 3 is not a string
        """
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{at}: {raw!r} is not a table (sites, bucket, policy, meta)")
        for key in raw:
            if key not in _TABLE_KEYS:
                raise ConfigError(f"{at}.{key}: unknown key (expected one of {_TABLE_NAMES})")
        sites = raw.get("sites")
        if not isinstance(sites, Mapping) or not sites:
            raise ConfigError(f'{at}.sites: missing or empty (a table site = "jetstream domain")')
        for site, domain in sites.items():
            if not isinstance(domain, str) or not domain:
                raise ConfigError(f"{at}.sites.{site}: {domain!r} is not a JetStream domain name")
        for key in ("bucket", "meta"):
            if key in raw and not isinstance(raw[key], str):
                raise ConfigError(f"{at}.{key}: {raw[key]!r} is not a string")
        meta = raw.get("meta")
        if meta is not None and meta not in sites:
            raise ConfigError(f"{at}.meta: {meta!r} is not one of its sites ({', '.join(sites)})")
        policy = raw.get("policy", {})
        if not isinstance(policy, Mapping):
            raise ConfigError(f"{at}.policy: {policy!r} is not a table of Policy fields")
        for key in policy:
            if key not in _POLICY_FIELDS:
                raise ConfigError(
                    f"{at}.policy.{key}: unknown key (expected one of {', '.join(_POLICY_FIELDS)})"
                )
        try:
            made = Policy(**policy)
            return cls(dict(sites), str(raw.get("bucket", "default")), made, meta)
        except ConfigError as exc:
            raise ConfigError(f"{at}: {exc}") from exc
        except TypeError as exc:  # a field of the wrong type
            raise ConfigError(f"{at}.policy: {exc}") from exc

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> StorageSpec:
        """The spec :meth:`as_dict` described (:class:`ConfigError` naming what is wrong)."""
        try:
            policy = Policy(**{k: v for k, v in raw["policy"].items() if k in _POLICY_FIELDS})
            return cls(dict(raw["sites"]), str(raw["bucket"]), policy, raw.get("meta"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"storage spec {dict(raw)!r} is unreadable ({exc!r})") from exc
