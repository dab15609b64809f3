"""The raw JetStream wire vocabulary, in one place: API subjects, status headers, ack tokens.

Everything else in Diaspora goes through nats-py's JetStream context or the
:class:`~diaspora.fabric.Fabric`; only the few requests nats-py does not
model (a pull request we pace ourselves, an API probe) are spelled here.

>>> api_prefix(None), api_prefix("edge")
('$JS.API', '$JS.edge.API')
>>> next_subject("edge1_patterns", "dsp-sum", domain="edge")
'$JS.edge.API.CONSUMER.MSG.NEXT.edge1_patterns.dsp-sum'
>>> kv_subject("cfg", "mode", domain="edge")
'$JS.edge.API.$KV.cfg.mode'
>>> parse_ack_subject("$JS.ACK.xs.dsp-a.1.42.40.1700000000000000000.7")
(42, 1700000000.0, 7)
>>> parse_consumer_seq("$JS.ACK.xs.dsp-a.1.42.40.1700000000000000000.7")
40
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACK",
    "DESCRIPTION",
    "EXPECTED_LAST_SUBJECT_SEQ",
    "HEARTBEAT",
    "KV_OPERATION",
    "NO_RESPONDERS",
    "REQUEST_ENDED",
    "REQUEST_EXPIRED",
    "ROLLUP",
    "STATUS",
    "WRONG_LAST_SEQUENCE",
    "api_prefix",
    "info_subject",
    "kv_subject",
    "next_subject",
    "parse_ack_subject",
    "parse_consumer_seq",
]

#: Header carrying the status code of a protocol message (no payload, no reply subject).
STATUS: Final = "Status"
#: Header carrying a status message's reason.
DESCRIPTION: Final = "Description"
#: Idle heartbeat of a pull request: the consumer is alive.
HEARTBEAT: Final = "100"
#: Core NATS: a request was sent to a subject nobody subscribes to.
NO_RESPONDERS: Final = "503"
#: Statuses that end one pull request (no messages, request expired).
REQUEST_EXPIRED: Final = ("404", "408")
#: 409 descriptions that only end one pull request; any other 409 means the consumer is gone.
REQUEST_ENDED: Final = (
    "Message Size Exceeds MaxBytes",
    "Batch Completed",
    "Exceeded MaxWaiting",
    "Exceeded MaxRequestBatch",
    "Exceeded MaxRequestExpires",
    "Exceeded MaxRequestMaxBytes",
)
#: Header: write only if the subject's last message is at this sequence (KV compare-and-set).
EXPECTED_LAST_SUBJECT_SEQ: Final = "Nats-Expected-Last-Subject-Sequence"
#: Header marking a KV delete (``DEL``) or purge (``PURGE``).
KV_OPERATION: Final = "KV-Operation"
#: Header asking the stream to drop the subject's older messages (``sub``).
ROLLUP: Final = "Nats-Rollup"
#: API error codes of a write that expected another last sequence.
WRONG_LAST_SEQUENCE: Final = (10071, 10164)
#: Body of a (cumulative, with ``AckPolicy.ALL``) acknowledgement.
ACK: Final = b"+ACK"


def api_prefix(domain: str | None) -> str:
    """The JetStream API prefix of ``domain`` (``None``: the connected server's own)."""
    return "$JS.API" if domain is None else f"$JS.{domain}.API"


def info_subject(domain: str | None = None) -> str:
    """The account-info request subject, a cheap "is JetStream answering?" probe."""
    return f"{api_prefix(domain)}.INFO"


def kv_subject(bucket: str, key: str, *, domain: str | None = None) -> str:
    """Where a write of ``key`` to KV ``bucket`` goes (through ``domain``'s API prefix if named).

    ``$KV.>`` subjects do not cross a leaf link between domains; the prefixed
    form is mapped to them by the server of that domain.
    """
    plain = f"$KV.{bucket}.{key}"
    return plain if domain is None else f"{api_prefix(domain)}.{plain}"


def next_subject(stream: str, consumer: str, *, domain: str | None = None) -> str:
    """Where pull requests for ``consumer`` on ``stream`` go."""
    return f"{api_prefix(domain)}.CONSUMER.MSG.NEXT.{stream}.{consumer}"


def parse_ack_subject(reply: str) -> tuple[int, float, int]:
    """(stream seq, timestamp s, num pending) from a ``$JS.ACK...`` reply subject.

    Raises ``ValueError`` (or ``IndexError``) for anything else.
    """
    # _ack_parts, inlined: this runs on every message delivered
    if not reply.startswith("$JS.ACK."):
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    parts = reply.split(".")
    base = 2 if len(parts) == 9 else 4
    return int(parts[base + 3]), int(parts[base + 5]) / 1e9, int(parts[base + 6])


def parse_consumer_seq(reply: str) -> int:
    """The consumer sequence of a ``$JS.ACK...`` reply subject (1, 2... per consumer).

    Raises ``ValueError`` (or ``IndexError``) for anything else.
    """
    parts, base = _ack_parts(reply)
    return int(parts[base + 4])


def _ack_parts(reply: str) -> tuple[list[str], int]:
    """The tokens of an ack subject and the index of its stream token."""
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    # or, with domain and account hash: $JS.ACK.<domain>.<hash>.<stream>... .<pending>.<token>
    parts = reply.split(".")
    if parts[:2] != ["$JS", "ACK"]:
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    return parts, 2 if len(parts) == 9 else 4
