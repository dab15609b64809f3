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


@dataclass(frozen=True)
class StorageSpec:
    """Site name → JetStream domain, the bucket, its policy and where its manifests live."""

    sites: Mapping[str, str]
    bucket: str = "default"
    policy: Policy = field(default_factory=Policy)
    #: The site whose KV holds the manifests (default: the first site).
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
    def from_dict(cls, raw: Mapping[str, Any]) -> StorageSpec:
        """The spec :meth:`as_dict` described (:class:`ConfigError` naming what is wrong)."""
        try:
            policy = Policy(**{k: v for k, v in raw["policy"].items() if k in _POLICY_FIELDS})
            return cls(dict(raw["sites"]), str(raw["bucket"]), policy, raw.get("meta"))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"storage spec {dict(raw)!r} is unreadable ({exc!r})") from exc
