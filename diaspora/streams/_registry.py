"""Where a stream's QoS spec lives: the ``diaspora-qos`` KV bucket, keyed by subject.

QoS is a property of the stream, not of one actor: producers (``block``) and
consumers (every other policy, stalls, reconstruction) of a subject read the
same spec when they start. Declare it from Python or from a config file's
``[streams."<subject>".qos]`` table (``diaspora run`` declares those before
starting the tree).

>>> import anyio
>>> from diaspora.fabric import Fabric
>>> from diaspora.streams._qos import OverloadPolicy, QosSpec
>>> async def demo() -> None:
...     async with Fabric() as fabric:
...         spec = QosSpec(rate=100, max_lag_items=500, policy=OverloadPolicy.decimate(4))
...         await declare_qos(fabric, "edge1.patterns", spec)
...         print(await lookup_qos(fabric, "edge1.patterns") == spec)
...         print(await lookup_qos(fabric, "other"))
>>> anyio.run(demo)
True
None
"""

from __future__ import annotations

from typing import Final

from diaspora import codec
from diaspora.errors import ConfigError, DecodeError
from diaspora.fabric import Fabric, check_subject
from diaspora.streams._qos import OverloadPolicy, QosSpec

__all__ = ["QOS_BUCKET", "declare_qos", "force_policy", "force_subject", "lookup_qos"]

QOS_BUCKET: Final = "diaspora-qos"
_FORCE_PREFIX: Final = "diaspora.qos.force"


async def declare_qos(fabric: Fabric, subject: str, spec: QosSpec) -> None:
    """Store ``spec`` as the QoS of ``subject`` (replacing any earlier one)."""
    check_subject(subject, where="declare_qos")
    kv = await fabric.ensure_kv(QOS_BUCKET)
    await kv.put(subject, codec.encode(spec.to_mapping()))


async def lookup_qos(fabric: Fabric, subject: str) -> QosSpec | None:
    """The QoS declared for ``subject``, or ``None``."""
    kv = await fabric.ensure_kv(QOS_BUCKET)
    entry = await kv.get(subject)
    if entry is None:
        return None
    where = f"{QOS_BUCKET}/{subject}"
    try:
        data = codec.decode(entry.value)
    except DecodeError as exc:
        raise ConfigError(f"{where}: unreadable QoS spec: {exc}") from exc
    return QosSpec.from_mapping(data, where=where)


def force_subject(subject: str) -> str:
    """Where the running consumers of ``subject`` listen for :func:`force_policy` orders."""
    return f"{_FORCE_PREFIX}.{subject}"


async def force_policy(
    fabric: Fabric, subject: str, policy: OverloadPolicy | None, *, by: str
) -> None:
    """Switch every running consumer of ``subject`` into ``policy`` now, whatever its bounds
    say (``None``: release them to their own measurements); ``by`` names who asked.

    A pre-emptive switch (a monitor that predicts congestion): best effort on
    the wire, like positions; consumers that start later read the declared
    spec (:func:`declare_qos`), so declare it too for the switch to last.
    """
    check_subject(subject, where="force_policy")
    order = {"policy": None if policy is None else policy.to_config(), "by": by}
    await fabric.publish_core(force_subject(subject), codec.encode(order))
