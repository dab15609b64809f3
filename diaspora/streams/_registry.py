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
from diaspora.streams._qos import QosSpec

__all__ = ["QOS_BUCKET", "declare_qos", "lookup_qos"]

QOS_BUCKET: Final = "diaspora-qos"


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
