"""The fabric layer: NATS connection, embedded servers, JetStream resources, naming."""

from diaspora.fabric._connection import Inbound, Inbox
from diaspora.fabric._consumer import ConsumerSettings, Delivery, PullConsumer
from diaspora.fabric._stores import KeyValueBucket, KvEntry
from diaspora.fabric.fabric import DEFAULT_DUPLICATE_WINDOW, Fabric, StreamLimits
from diaspora.fabric.naming import check_subject, stream_name
from diaspora.fabric.server import (
    DEFAULT_MAX_PAYLOAD,
    INLINE_PAYLOAD_LIMIT,
    EmbeddedCluster,
    EmbeddedServer,
    ServerState,
    find_nats_server,
    free_port,
)

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "DEFAULT_MAX_PAYLOAD",
    "INLINE_PAYLOAD_LIMIT",
    "ConsumerSettings",
    "Delivery",
    "EmbeddedCluster",
    "EmbeddedServer",
    "Fabric",
    "Inbound",
    "Inbox",
    "KeyValueBucket",
    "KvEntry",
    "PullConsumer",
    "ServerState",
    "StreamLimits",
    "check_subject",
    "find_nats_server",
    "free_port",
    "stream_name",
]
