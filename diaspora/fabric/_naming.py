"""Subjects are the public interface; this module maps them to JetStream names.

**The stream-naming rule.** A logical stream name *is* a NATS subject, such as
``edge1.patterns``. The JetStream stream that captures it is named by
replacing every ``.`` with ``_`` (``edge1_patterns``) and captures exactly
that one subject. Two subjects that map to the same name (``a.b_c`` and
``a_b.c``) are refused when the second stream is ensured, with an error naming
both. Subjects under ``diaspora.`` are reserved for the framework
(``diaspora.events.>``, ``diaspora.dlq.>``, ``diaspora.replay.>``,
``diaspora.control.>``...).

**Partitioned subjects.** A subject split for keyed scale-out (see
:mod:`diaspora.fabric._partitions`) keeps its stream, which then also
captures ``<subject>.~p.*``: partition ``k`` is ``<subject>.~p.<k>`` and
maps to the same stream name.

**Event inputs.** The one exception: an actor may consume the event stream.
An input under ``diaspora.events.`` is a subject *pattern* (``*`` for one
token, ``>`` for the rest) filtering the ``DIASPORA_EVENTS`` stream, which
captures ``diaspora.events.>``; no other input may have a wildcard.

>>> stream_name("edge1.patterns")
'edge1_patterns'
>>> stream_name("diaspora.events.actor.*.lag")
'DIASPORA_EVENTS'
>>> stream_name("edge1.patterns.~p.3"), partition_subject("edge1.patterns", 3)
('edge1_patterns', 'edge1.patterns.~p.3')
>>> check_input("diaspora.events.actor.*.lag", where="Watcher.inputs")
'diaspora.events.actor.*.lag'
>>> event_subject("actor", "sum", "crashed")   # from diaspora.events, where events live
'diaspora.events.actor.sum.crashed'
"""

from __future__ import annotations

import re
from typing import Final

from diaspora.errors import ConfigError
from diaspora.events import EVENTS_PREFIX, event_subject

__all__ = [
    "DLQ_PREFIX",
    "DLQ_STREAM",
    "EVENTS_PREFIX",
    "EVENTS_STREAM",
    "RESERVED_PREFIX",
    "check_input",
    "check_subject",
    "dlq_subject",
    "event_subject",
    "is_event_input",
    "partition_base",
    "partition_pattern",
    "partition_subject",
    "stream_name",
    "token",
]

RESERVED_PREFIX: Final = "diaspora."
EVENTS_STREAM: Final = "DIASPORA_EVENTS"
DLQ_PREFIX: Final = "diaspora.dlq"
DLQ_STREAM: Final = "DIASPORA_DLQ"

_EVENTS_DOT: Final = EVENTS_PREFIX + "."
_TOKEN = re.compile(r"^[^\s.*>]+$")
_BAD_TOKEN_CHARS = re.compile(r"[\s.*>]")
#: The token between a partitioned subject and its partition number.
PARTITION_TOKEN: Final = "~p"
_PARTITION_SUFFIX = re.compile(r"^(?P<base>.+)\.~p\.(?P<k>[0-9]+)$")


def check_subject(subject: str, *, where: str = "subject", reserved_ok: bool = False) -> str:
    """Validate a literal subject (no wildcards); return it unchanged.

    >>> check_subject("edge1.patterns")
    'edge1.patterns'
    """
    if not isinstance(subject, str) or not subject:
        raise ConfigError(f"{where}: {subject!r} is not a subject (a non-empty string like 'a.b')")
    for part in subject.split("."):
        if not _TOKEN.match(part):
            raise ConfigError(
                f"{where}: {subject!r} is not a literal NATS subject "
                "(dot-separated tokens without spaces, '*' or '>')"
            )
    if not reserved_ok and subject.startswith(RESERVED_PREFIX):
        raise ConfigError(f"{where}: {subject!r} is under the reserved prefix {RESERVED_PREFIX!r}")
    return subject


def is_event_input(subject: str) -> bool:
    """Whether ``subject`` (a literal or a pattern) is under ``diaspora.events.``.

    >>> is_event_input("diaspora.events.>"), is_event_input("edge1.patterns")
    (True, False)
    """
    return subject.startswith(_EVENTS_DOT)


def check_input(subject: str, *, where: str = "inputs") -> str:
    """Validate one actor input; return it unchanged.

    A literal, non-reserved subject (as :func:`check_subject`), or an event
    input: a subject pattern under ``diaspora.events.`` (see the module docstring).

    >>> check_input("edge1.*", where="Watcher.inputs")
    Traceback (most recent call last):
    ...
    diaspora.errors.ConfigError: Watcher.inputs: 'edge1.*' has a wildcard: only an event input ...
    """
    if not isinstance(subject, str) or not is_event_input(subject):
        if isinstance(subject, str) and _is_pattern(subject):
            raise ConfigError(
                f"{where}: {subject!r} has a wildcard: only an event input (a subject under "
                f"{_EVENTS_DOT!r}, such as {_EVENTS_DOT + 'actor.*.lag'!r}) may be a pattern; "
                "list the literal subjects to consume"
            )
        return check_subject(subject, where=where)
    parts = subject.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part in ("*", ">") and (part == "*" or last):
            continue
        if not _TOKEN.match(part):
            raise ConfigError(
                f"{where}: {subject!r} is not a subject pattern (dot-separated tokens without "
                "spaces; '*' stands for one whole token, '>' for the rest and comes last)"
            )
    return subject


def _is_pattern(subject: str) -> bool:
    return "*" in subject or ">" in subject


def partition_subject(subject: str, k: int) -> str:
    """The subject of partition ``k`` of partitioned ``subject`` (same stream)."""
    return f"{subject}.{PARTITION_TOKEN}.{k}"


def partition_pattern(subject: str) -> str:
    """The pattern the stream of a partitioned ``subject`` captures besides ``subject``."""
    return f"{subject}.{PARTITION_TOKEN}.*"


def partition_base(subject: str) -> tuple[str, int] | None:
    """``(subject, k)`` of a partition subject, ``None`` for any other subject.

    >>> partition_base("a.b.~p.2"), partition_base("a.b")
    (('a.b', 2), None)
    """
    found = _PARTITION_SUFFIX.match(subject)
    return (found["base"], int(found["k"])) if found else None


def stream_name(subject: str) -> str:
    """The JetStream stream name capturing ``subject`` (see the module docstring)."""
    if is_event_input(subject):
        return EVENTS_STREAM
    if (base := partition_base(subject)) is not None:
        subject = base[0]
    return subject.replace(".", "_").replace("/", "_").replace("\\", "_")


def token(name: str) -> str:
    """Make ``name`` safe as one subject token (actor ids may contain dots)."""
    return _BAD_TOKEN_CHARS.sub("_", name) or "_"


def dlq_subject(actor: str) -> str:
    """The dead-letter subject of one actor: ``diaspora.dlq.<actor>``."""
    return f"{DLQ_PREFIX}.{token(actor)}"
