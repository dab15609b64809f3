"""The one exception hierarchy of Diaspora.

Every error names what went wrong, where (file, field, subject, sequence) and
what to do about it, so that it can be shown to a user as it is.
"""

from __future__ import annotations

__all__ = [
    "ActorCrashed",
    "CheckpointError",
    "ConfigError",
    "DecodeError",
    "DiasporaError",
    "FabricUnavailable",
    "FencedOut",
    "PayloadTooLarge",
    "PublishTimeout",
    "RestartIntensityExceeded",
    "ServerNotFound",
    "ServerStartError",
    "SupervisorError",
]


class DiasporaError(Exception):
    """Base class of every error Diaspora raises on purpose."""


class ConfigError(DiasporaError, ValueError):
    """A configuration value is invalid; the message names the file and field path."""


class DecodeError(DiasporaError, ValueError):
    """A payload could not be decoded (truncated, corrupt, or not Diaspora's encoding)."""


class PayloadTooLarge(DiasporaError, ValueError):
    """A payload exceeds what the fabric can carry, even through the object store."""


class FabricUnavailable(DiasporaError, ConnectionError):
    """The NATS fabric cannot be reached or did not answer in time."""


class PublishTimeout(FabricUnavailable, TimeoutError):
    """A JetStream publish was not acknowledged in time (server hung, paused or gone)."""


class ServerNotFound(FabricUnavailable):
    """No ``nats-server`` binary could be located."""


class ServerStartError(FabricUnavailable):
    """A ``nats-server`` process did not become ready; the message has its log tail."""


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


class SupervisorError(DiasporaError):
    """A supervisor runtime call failed (OTP's ``{error, ...}`` returns)."""


class RestartIntensityExceeded(SupervisorError):
    """A supervisor saw more restarts than its intensity allows within its period."""
