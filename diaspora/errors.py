"""The one exception hierarchy of Diaspora: every error it raises on purpose is here.

Every error names what went wrong, where (file, field, subject, sequence) and
what to do about it, so that it can be shown to a user as it is. Catch
:class:`DiasporaError` for all of them; the builtin base next to each lets
code that knows nothing of Diaspora catch it too (``except TimeoutError``)::

    DiasporaError
    ├── ConfigError (ValueError)            a file or argument is invalid: names the field
    │   └── PartitionKeyRequired            emit to a partitioned subject without key=
    ├── DecodeError (ValueError)            a payload cannot be decoded
    ├── EncodeError (TypeError)             a value cannot be encoded: names its type and path
    ├── PayloadTooLarge (ValueError)
    ├── FabricUnavailable (ConnectionError) NATS cannot be reached or did not answer
    │   ├── PublishTimeout (TimeoutError)
    │   ├── NoResponders                    nobody serves a request subject
    │   ├── ServerNotFound                  no nats-server binary
    │   ├── ServerStartError                nats-server did not become ready
    │   └── AuthorizationFailed             the server refused the credentials
    ├── PermissionDenied (PermissionError)  the server refused a publish or subscribe
    ├── StreamNotFound (LookupError)
    ├── ObjectUnreadable                    an object-store object is missing, incomplete or corrupt
    ├── RevisionMismatch                    a KV compare-and-set lost the race
    ├── PublishError                        JetStream refused a message for good
    ├── CheckpointError
    │   └── FencedOut                       a newer instance owns the checkpoint
    ├── ActorCrashed                        an actor stopped abnormally (__cause__: why)
    ├── HandlerHung (TimeoutError)          handle ran past handle_deadline
    ├── InjectedFault                       a test's injected crash
    ├── HistoryError                        a producer's history directory is unusable
    ├── ReplayError
    │   └── ReplayUnavailable (TimeoutError) no producer answered a replay request
    ├── ReconstructionError
    ├── Stale (LookupError)                 a view item's reference no longer resolves
    ├── SupervisorError                     OTP's {error, Reason}: .reason
    │   ├── ChildNotFound (LookupError), ChildRunning, ChildRestarting,
    │   │   ChildAlreadyPresent, ChildAlreadyStarted, SimpleOneForOneError,
    │   │   ChildStartError, SupervisorNotRunning
    │   └── RestartIntensityExceeded        too many restarts: the supervisor gave up
    ├── ChildShutdown                       raise to exit with OTP's ``shutdown`` reason
    ├── ChildIgnore                         raise before started() to decline (OTP's ``ignore``)
    ├── NodeCrashed                         a process node exited abnormally
    │   └── NodeHung                        ... after its heartbeats stopped
    ├── ControlError                        a control request was refused or not answered
    │   └── MigrationFailed                 a live migration aborted (the source kept running)
    ├── InjectionError                      a fault could not be injected
    ├── LinkFaultError                      a link fault order was refused or unanswered
    │   └── LinkControlNotFound (NoResponders) no link control serves that site
    ├── WorkflowError                       a workflow under test did not start or stop
    ├── ViewError                           a view's snapshot is missing or unreadable
    ├── WorkerFenced                        a pool worker cut off from its server stopped itself
    └── StorageError                        resilient storage (diaspora.storage) failed
        ├── NotStored (LookupError)         no object of that name
        ├── FragmentsMissing                too few intact fragments: names them and their sites
        ├── PlacementError                  too few sites up to place a layout
        ├── ObjectChanged                   overwritten while a streaming read ran
        └── ManifestUnavailable             too few manifest sites answer to read or write

>>> issubclass(ReplayUnavailable, TimeoutError), issubclass(NoResponders, DiasporaError)
(True, True)
"""

from __future__ import annotations

import signal

__all__ = [
    "ActorCrashed",
    "AuthorizationFailed",
    "BridgeError",
    "CheckpointError",
    "ChildAlreadyPresent",
    "ChildAlreadyStarted",
    "ChildIgnore",
    "ChildNotFound",
    "ChildRestarting",
    "ChildRunning",
    "ChildShutdown",
    "ChildStartError",
    "ConfigError",
    "ControlError",
    "DecodeError",
    "DiasporaError",
    "EncodeError",
    "FabricUnavailable",
    "FencedOut",
    "HandlerHung",
    "HistoryError",
    "InjectedFault",
    "InjectionError",
    "LinkControlNotFound",
    "LinkFaultError",
    "MigrationFailed",
    "NoResponders",
    "NodeCrashed",
    "NodeHung",
    "ObjectUnreadable",
    "PartitionKeyRequired",
    "PayloadTooLarge",
    "PermissionDenied",
    "PublishError",
    "PublishTimeout",
    "ReconstructionError",
    "ReplayError",
    "ReplayUnavailable",
    "RestartIntensityExceeded",
    "RevisionMismatch",
    "ServerNotFound",
    "ServerStartError",
    "SimpleOneForOneError",
    "Stale",
    "StreamFull",
    "StreamNotFound",
    "SupervisorError",
    "SupervisorNotRunning",
    "ViewError",
    "WorkerFenced",
    "WorkflowError",
]


class DiasporaError(Exception):
    """Base class of every error Diaspora raises on purpose."""


class ConfigError(DiasporaError, ValueError):
    """A configuration value is invalid; the message names the file and field path."""


class PartitionKeyRequired(ConfigError):
    """An item for a partitioned subject has no key, so no partition can own it alone."""


# -- payloads ----------------------------------------------------------------------------


class DecodeError(DiasporaError, ValueError):
    """A payload could not be decoded (truncated, corrupt, or not Diaspora's encoding)."""


class EncodeError(DiasporaError, TypeError):
    """A value cannot be encoded; the message names its type and its path in the payload."""


class PayloadTooLarge(DiasporaError, ValueError):
    """A payload exceeds what the fabric can carry, even through the object store."""


# -- the fabric --------------------------------------------------------------------------


class FabricUnavailable(DiasporaError, ConnectionError):
    """The NATS fabric cannot be reached or did not answer in time."""


class PublishTimeout(FabricUnavailable, TimeoutError):
    """A JetStream publish was not acknowledged in time (server hung, paused or gone)."""


class NoResponders(FabricUnavailable):
    """A request went to a subject nobody serves (the service is not running or cut off)."""


class ServerNotFound(FabricUnavailable):
    """No ``nats-server`` binary could be located."""


class ServerStartError(FabricUnavailable):
    """A ``nats-server`` process did not become ready; the message has its log tail."""


class AuthorizationFailed(FabricUnavailable):
    """The server refused the fabric's credentials (user/password, token, nkey, creds, TLS)."""


class PermissionDenied(DiasporaError, PermissionError):
    """The server refused to let this connection publish or subscribe to a subject.

    ``subject`` is the refused subject and ``operation`` ``"publish"`` or ``"subscription"``.
    """

    def __init__(self, message: str, *, subject: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.subject = subject
        self.operation = operation


class StreamNotFound(DiasporaError, LookupError):
    """A subject has no stream yet: nothing declared it and nothing was published to it."""


class ObjectUnreadable(DiasporaError):
    """An object-store object is missing, deleted, lacks chunks, or fails its SHA-256 check."""


class RevisionMismatch(DiasporaError):
    """A key-value write expected another revision: someone else wrote the key meanwhile."""


class PublishError(DiasporaError):
    """JetStream refused a message for a reason retrying cannot fix (size, wrong stream...)."""


class StreamFull(PublishError):
    """A stream set to ``discard="new"`` is full and refused the message: back-pressure."""


# -- actors ------------------------------------------------------------------------------


class CheckpointError(DiasporaError):
    """A checkpoint could not be read, written or restored."""


class FencedOut(CheckpointError):
    """Another instance of the same actor wrote a newer checkpoint; this one must stop."""


class ActorCrashed(DiasporaError):
    """An actor stopped abnormally; ``__cause__`` holds the original exception."""

    def __init__(self, actor: str, reason: BaseException | str) -> None:
        self.actor = actor
        self.reason = reason
        super().__init__(f"actor {actor!r} crashed: {reason!r}")


class HandlerHung(DiasporaError, TimeoutError):
    """``handle`` ran past the actor's ``handle_deadline``; the actor is treated as crashed."""


class InjectedFault(DiasporaError):
    """Raised inside an actor by an injected ``crash`` (never by real code)."""


# -- streams -----------------------------------------------------------------------------


class HistoryError(DiasporaError):
    """A history directory cannot be used (locked, unreadable, unwritable) or is closed."""


class ReplayError(DiasporaError):
    """A replay request failed: the producer refused it or answered nonsense."""


class ReplayUnavailable(ReplayError, TimeoutError):
    """No producer answered a replay request in time: its history cannot be reached."""


class ReconstructionError(DiasporaError):
    """No stand-in can be made for a gap (no neighbour observed, or a reconstructor failed)."""


# -- views -------------------------------------------------------------------------------


class Stale(DiasporaError, LookupError):
    """A view item refers to a message its stream no longer has (retention dropped it).

    Never answered with another payload: the item is stale. ``view``,
    ``version`` (the item's sequence on the view's output), ``stream`` and
    ``seq`` say which reference.
    """

    def __init__(self, view: str, version: int, stream: str, seq: int, source: str = "") -> None:
        self.view, self.version, self.stream, self.seq = view, version, stream, seq
        of = f" (source {source!r})" if source else ""
        super().__init__(
            f"view {view!r} item version {version}: stream {stream!r} no longer has seq {seq}"
            f"{of}; the item is stale. Keep copies with on_stale = 'pin', or give the source "
            "stream a longer retention (max_age / max_msgs)"
        )


# -- supervision -------------------------------------------------------------------------


class SupervisorError(DiasporaError):
    """A supervisor runtime call failed (OTP's ``{error, Reason}`` returns).

    ``reason`` is OTP's name for the error, e.g. ``"not_found"``.
    """

    reason: str = "error"


class ChildNotFound(SupervisorError, LookupError):
    """No child with that id (or handle) under this supervisor."""

    reason = "not_found"


class ChildRunning(SupervisorError):
    """``restart_child``/``delete_child`` on a child that is running: terminate it first."""

    reason = "running"


class ChildRestarting(SupervisorError):
    """``restart_child``/``delete_child`` on a child the supervisor is about to restart."""

    reason = "restarting"


class ChildAlreadyPresent(SupervisorError):
    """``start_child`` with the id of a stopped child: use ``restart_child`` or ``delete_child``."""

    reason = "already_present"


class ChildAlreadyStarted(SupervisorError):
    """``start_child`` with the id of a running child."""

    reason = "already_started"


class SimpleOneForOneError(SupervisorError):
    """A call ``simple_one_for_one`` supervisors do not support, or an id given for a handle."""

    reason = "simple_one_for_one"


class ChildStartError(SupervisorError):
    """A child failed to start; ``__cause__`` holds why, ``child`` names it."""

    reason = "failed_to_start_child"

    def __init__(self, message: str, *, child: str) -> None:
        self.child = child
        super().__init__(message)


class SupervisorNotRunning(SupervisorError):
    """A runtime call reached a supervisor that has stopped (or stopped while serving it)."""

    reason = "noproc"


class RestartIntensityExceeded(SupervisorError):
    """A supervisor saw more restarts than its intensity allows within its period."""

    reason = "shutdown"


class ChildShutdown(DiasporaError):
    """Raise it from a child's ``run`` to exit with OTP's ``shutdown`` reason.

    Like returning, it is a normal exit: a transient child is not restarted (a
    permanent one still is, as in OTP). Raising it says "I was told to stop",
    e.g. by a peer, rather than "my work is done".
    """


class ChildIgnore(DiasporaError):
    """Raise it from a child's ``run`` before ``started()`` to decline starting (OTP's ``ignore``).

    The supervisor keeps the spec with no running child (a temporary child, or
    one of a ``simple_one_for_one`` supervisor, is removed), does not restart
    it and does not count it toward its restart intensity; ``start_child`` and
    ``restart_child`` return ``None``. A start function declines by returning
    :data:`~diaspora.supervision.IGNORE` instead. Raised after ``started()`` it
    is an ordinary crash.
    """


# -- process nodes -----------------------------------------------------------------------


class NodeCrashed(DiasporaError):
    """A process node exited abnormally: non-zero status, or killed by a signal."""

    def __init__(self, node: str, pid: int, returncode: int) -> None:
        self.node = node
        self.pid = pid
        self.returncode = returncode
        if returncode < 0:
            try:
                how = f"killed by {signal.Signals(-returncode).name}"
            except ValueError:
                how = f"killed by signal {-returncode}"
        else:
            how = f"exited with status {returncode}"
        super().__init__(f"process node {node!r} (pid {pid}) {how}")


class NodeHung(NodeCrashed):
    """A process node stopped sending heartbeats (or never reported started): it was SIGKILLed."""

    def __init__(
        self, node: str, pid: int, returncode: int, *, silent_s: float, starting: bool
    ) -> None:
        super().__init__(node, pid, returncode)
        self.silent_s = silent_s
        self.starting = starting
        what = "did not report started" if starting else "sent no heartbeat"
        self.args = (
            f"process node {node!r} (pid {pid}) {what} for {silent_s:.1f}s and was killed "
            "(SIGKILL); a call that blocks the event loop hangs a node: run blocking work "
            "with anyio.to_thread.run_sync, or raise heartbeat_timeout/start_timeout",
        )


# -- control -----------------------------------------------------------------------------


class ControlError(DiasporaError):
    """A request on a control subject (``diaspora.control.>``) was refused or not answered.

    The message names the subject and what the server said (or that nobody serves it).
    """


class MigrationFailed(ControlError):
    """A live migration did not happen: the source keeps running; the message says why."""


# -- testing -----------------------------------------------------------------------------


class InjectionError(DiasporaError):
    """A fault could not be injected (no such target, not reachable, not ours to kill...)."""


class WorkflowError(DiasporaError):
    """The workflow under test did not start, did not stop, or left processes behind."""


class ViewError(DiasporaError):
    """A data view's snapshot is missing, unreadable, or could not be taken."""


class BridgeError(ConfigError):
    """A bridge between two sites cannot be made: a domain that does not answer (a typo, a
    link down), a missing origin stream, or a destination stream in the way."""


# -- links -------------------------------------------------------------------------------


class LinkFaultError(DiasporaError):
    """A link fault order was refused (a bad field) or went unanswered; names the site.

    ``site`` is the site whose link was ordered; ``reply`` the control's answer
    (``{"ok": false, "error": ...}``) when there was one.
    """

    def __init__(self, message: str, *, site: str, reply: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.site = site
        self.reply = reply


class LinkControlNotFound(LinkFaultError, NoResponders):
    """Nobody serves a site's link control subject: no ``LinkControl`` runs for that site
    (a typo in the site name, or it is not started, or it is across a cut link)."""


# -- pools (issue 14: pools, declared) --------------------------------------------------


class WorkerFenced(DiasporaError):
    """A pool worker stopped itself: it was cut off from its site's server for too long, and
    the pool will start its actors elsewhere (each actor runs in one place at a time)."""


# -- resilient storage (issue 16: chunked objects across sites) ---------------------------


class StorageError(DiasporaError):
    """Resilient storage (:mod:`diaspora.storage`) could not do what was asked."""


class NotStored(StorageError, LookupError):
    """No object of that name is stored in the bucket (never put, or deleted)."""


class FragmentsMissing(StorageError):
    """A chunk has fewer intact fragments than its layout needs to be read; ``missing`` lists
    ``(chunk, fragment, site, why)`` for every fragment that could not be used."""

    def __init__(self, message: str, *, missing: list[tuple[int, int, str, str]]) -> None:
        super().__init__(message)
        self.missing = missing


class PlacementError(StorageError):
    """Too few sites answer to place a layout with the loss tolerance the policy declares."""


class ObjectChanged(StorageError):
    """The object was overwritten or deleted while a streaming read of it ran; read it again."""


class ManifestUnavailable(StorageError):
    """Too few of a bucket's manifest sites answered to read or write a manifest (``landed``:
    a failed write may have left its manifest at a site, so its fragments are kept)."""

    landed: bool = False
