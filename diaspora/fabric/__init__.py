"""The fabric layer: NATS sealed behind one interface.

Everything that speaks NATS lives here: the connection and its reconnects,
embedded servers, streams, KV and object stores, the pull consumer, the
ordered publisher, the stored-message reader, subjects and their stream
names, sites (one JetStream domain each, joined by leaf links: ``Sites``,
``SiteView``), and the degradable link: :class:`LinkProxy`, the
:class:`LinkControl` service that obeys fault orders for it, and
:func:`link_fault` to send them. Layers above use :class:`Fabric`'s methods
and never a nats-py object. ``diaspora.fabric.headers`` holds the header
names, the public wire interface.
"""

# first, before anything imports nats-py: it imports nats-py with aiohttp deferred
from diaspora.fabric import _aiohttp  # noqa: F401
from diaspora.fabric._acks import ack_floors
from diaspora.fabric._auth import Auth, Tls
from diaspora.fabric._bridgegaps import BridgeMonitor, GapTracker, origin_limits, origin_of
from diaspora.fabric._bridges import Bridge, Direction, check_site, ensure_bridge, wait_site
from diaspora.fabric._connection import Inbound, Inbox
from diaspora.fabric._consumer import ConsumerSettings, Delivery, PullConsumer
from diaspora.fabric._direct import get_many
from diaspora.fabric._eventfeed import EventFeed, event_feed
from diaspora.fabric._fabric import DEFAULT_DUPLICATE_WINDOW, Fabric, StreamLimits
from diaspora.fabric._leafnodes import LeafRemote
from diaspora.fabric._linkcontrol import LinkControl
from diaspora.fabric._linkorder import LinkFault, LinkFaultKind, link_control_subject, link_fault
from diaspora.fabric._linkproxy import LinkProxy
from diaspora.fabric._monitorhttp import monitor_json
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
from diaspora.fabric._partitions import (
    consumer_progress,
    partition_of,
    partition_stream,
    stream_partitions,
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
from diaspora.fabric._sites import Site, Sites
from diaspora.fabric._sitespec import SiteSpec, check_sites
from diaspora.fabric._sitestore import ObjectStore, SiteStore
from diaspora.fabric._siteview import SiteView
from diaspora.fabric._stores import KeyValueBucket, KvEntry

__all__ = [
    "DEFAULT_DUPLICATE_WINDOW",
    "DEFAULT_MAX_PAYLOAD",
    "DLQ_STREAM",
    "EVENTS_STREAM",
    "Account",
    "Auth",
    "Bridge",
    "BridgeMonitor",
    "ConsumerSettings",
    "Delivery",
    "Direction",
    "EmbeddedCluster",
    "EmbeddedServer",
    "EventFeed",
    "Fabric",
    "GapTracker",
    "Inbound",
    "Inbox",
    "KeyValueBucket",
    "KvEntry",
    "LeafRemote",
    "LinkControl",
    "LinkFault",
    "LinkFaultKind",
    "LinkProxy",
    "ObjectStore",
    "OrderedPublisher",
    "Permissions",
    "PublishError",
    "PullConsumer",
    "ServerState",
    "ServerTls",
    "Site",
    "SiteSpec",
    "SiteStore",
    "SiteView",
    "Sites",
    "StoredMsg",
    "StreamLimits",
    "Tls",
    "User",
    "ack_floors",
    "check_input",
    "check_site",
    "check_sites",
    "check_subject",
    "consumer_progress",
    "dlq_subject",
    "ensure_bridge",
    "event_feed",
    "find_nats_server",
    "free_port",
    "get_many",
    "is_event_input",
    "link_control_subject",
    "link_fault",
    "monitor_json",
    "origin_limits",
    "origin_of",
    "partition_of",
    "partition_stream",
    "read_stored",
    "stream_name",
    "stream_partitions",
    "token",
    "wait_site",
    "workflow_permissions",
]
