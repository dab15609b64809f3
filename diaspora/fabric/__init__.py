"""The fabric layer: NATS sealed behind one interface.

Everything that speaks NATS lives here: the connection and its reconnects,
embedded servers, streams, KV and object stores, the pull consumer, the
ordered publisher, the stored-message reader, subjects and their stream
names. Layers above use :class:`Fabric`'s methods and never a nats-py
object. ``diaspora.fabric.headers`` holds the header names, the public wire
interface.
"""

# first, before anything imports nats-py: it imports nats-py with aiohttp deferred
from diaspora.fabric import _aiohttp  # noqa: F401
from diaspora.fabric._auth import Auth, Tls
from diaspora.fabric._connection import Inbound, Inbox
from diaspora.fabric._consumer import ConsumerSettings, Delivery, PullConsumer
from diaspora.fabric._fabric import DEFAULT_DUPLICATE_WINDOW, Fabric, StreamLimits
from diaspora.fabric._naming import (
    DLQ_STREAM,
    EVENTS_STREAM,
    check_input,
    check_subject,
    dlq_subject,
    is_event_input,
    stream_name,
    token,
)
from diaspora.fabric._publisher import OrderedPublisher, PublishError
from diaspora.fabric._reader import StoredMsg, read_stored
from diaspora.fabric._server import (
    DEFAULT_MAX_PAYLOAD,
    EmbeddedCluster,
    EmbeddedServer,
    ServerState,
    find_nats_server,
    free_port,
)
from diaspora.fabric._serverauth import (
    Account,
    Permissions,
    ServerTls,
    User,
    workflow_permissions,
)
from diaspora.fabric._stores import KeyValueBucket, KvEntry

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "DEFAULT_MAX_PAYLOAD",
    "DLQ_STREAM",
    "EVENTS_STREAM",
    "Account",
    "Auth",
    "ConsumerSettings",
    "Delivery",
    "EmbeddedCluster",
    "EmbeddedServer",
    "Fabric",
    "Inbound",
    "Inbox",
    "KeyValueBucket",
    "KvEntry",
    "OrderedPublisher",
    "Permissions",
    "PublishError",
    "PullConsumer",
    "ServerState",
    "ServerTls",
    "StoredMsg",
    "StreamLimits",
    "Tls",
    "User",
    "check_input",
    "check_subject",
    "dlq_subject",
    "find_nats_server",
    "free_port",
    "is_event_input",
    "read_stored",
    "stream_name",
    "token",
    "workflow_permissions",
]
