"""Permission violations: the server's asynchronous "no" to a publish or subscribe.

NATS does not refuse a forbidden publish or subscribe in the call: the server
sends ``-ERR 'Permissions Violation for Publish to "x"'`` later, and nats-py
hands it to the error callback while the connection stays up. A publish
waiting for its JetStream ack would otherwise time out with no reason given.
:class:`Violations` collects them so that the call waiting on that subject
fails at once with :class:`~diaspora.errors.PermissionDenied` naming it.

>>> v = parse_violation(Exception('nats: permissions violation for publish to "wf.x"'))
>>> v.operation, v.subject
('publish', 'wf.x')
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from diaspora.errors import PermissionDenied

__all__ = ["Violation", "Violations", "parse_violation"]

_PATTERN: Final = re.compile(
    r"permissions violation for (publish|subscription) to \"?([^\"\s]+)\"?", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One refused ``operation`` (``"publish"`` or ``"subscription"``) on ``subject``."""

    operation: str
    subject: str

    def error(self, user: str) -> PermissionDenied:
        """The error to raise, naming the subject and the connection's credentials."""
        verb = "publish to" if self.operation == "publish" else "subscribe to"
        return PermissionDenied(
            f"the server refused to let {user} {verb} {self.subject!r} (permissions "
            f"violation): grant it in that user's permissions, or use a subject it may use",
            subject=self.subject,
            operation=self.operation,
        )


def parse_violation(exc: BaseException) -> Violation | None:
    """The violation an error-callback exception reports, else ``None``."""
    match = _PATTERN.search(str(exc))
    if match is None:
        return None
    return Violation(match.group(1).lower(), match.group(2))


class Watch:
    """A call's view of the violations reported while it waits (see :meth:`Violations.watch`)."""

    def __init__(self, match: Callable[[Violation], bool], on_seen: Callable[[], None]) -> None:
        self._match = match
        self._on_seen = on_seen
        self.seen: Violation | None = None

    def offer(self, violation: Violation) -> None:
        if self.seen is None and self._match(violation):
            self.seen = violation
            self._on_seen()


class Violations:
    """The violations of one connection, offered to the calls that watch for them."""

    def __init__(self) -> None:
        self._watches: list[Watch] = []
        #: How many violations were reported so far (for tests and logs).
        self.count = 0

    def report(self, violation: Violation) -> None:
        self.count += 1
        for watch in list(self._watches):
            watch.offer(violation)

    @contextlib.contextmanager
    def watch(
        self, match: Callable[[Violation], bool], on_seen: Callable[[], None] = lambda: None
    ) -> Iterator[Watch]:
        """Collect the first matching violation while the block runs; ``on_seen`` is called
        then (to cancel the wait)."""
        watch = Watch(match, on_seen)
        self._watches.append(watch)
        try:
            yield watch
        finally:
            self._watches.remove(watch)


def refuses_publish(subject: str) -> Callable[[Violation], bool]:
    """Matches a refused publish to ``subject`` or a refused subscription to a reply inbox."""

    def match(v: Violation) -> bool:
        if v.operation == "publish":
            return v.subject == subject
        return v.subject.startswith("_INBOX.")

    return match


def refuses_subscription(subject: str) -> Callable[[Violation], bool]:
    return lambda v: v.operation == "subscription" and v.subject == subject
