"""Link fault orders: the JSON a :class:`~diaspora.fabric.LinkControl` obeys, and the client.

An order is a JSON object on ``diaspora.control.link.<site>.fault`` with the
fault injector's names and units (seconds, bytes per second):

========================  ==========================================================
``fault``                 fields
========================  ==========================================================
``latency``               ``seconds`` (added each way), ``jitter``, ``duration``
``bandwidth``             ``rate`` (bytes/s each way), ``duration``
``blackhole`` (``hold``)  ``seconds`` or ``duration`` (how long every byte is held)
``cut_link`` (``cut``)    ``seconds`` or ``duration`` (how long connections are refused)
``reset_link``            none: resets every connection once
(``reset``)
``heal_link``             none: lifts every fault now
(``heal``, ``clear``)
========================  ==========================================================

A lasting fault without a duration lasts until healed. Unknown fields are
refused, so a typo never silently becomes a default.

>>> LinkFault.from_order({"fault": "cut", "seconds": 10}).describe()
'cut_link for 10s'
>>> LinkFault.from_order({"fault": "latency", "seconds": "fast"})
Traceback (most recent call last):
...
diaspora.errors.ConfigError: link fault order: field 'seconds' of latency must be a finite ...
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from diaspora.errors import ConfigError, LinkControlNotFound, LinkFaultError, NoResponders
from diaspora.fabric._fabric import Fabric
from diaspora.fabric._naming import token

__all__ = ["LinkFault", "LinkFaultKind", "link_control_subject", "link_fault"]

CONTROL_PREFIX: Final = "diaspora.control.link"
_WHERE: Final = "link fault order"


class LinkFaultKind(StrEnum):
    """What a link control can do to its link (the injector's link fault names)."""

    LATENCY = "latency"
    BANDWIDTH = "bandwidth"
    RESET = "reset_link"
    BLACKHOLE = "blackhole"
    CUT = "cut_link"
    HEAL = "heal_link"

    @property
    def lasting(self) -> bool:
        """Whether the fault stays until its duration ends or a heal (reset and heal do not)."""
        return self not in (LinkFaultKind.RESET, LinkFaultKind.HEAL)


#: Short names an operator may use for the same faults.
ALIASES: Final = {
    "cut": LinkFaultKind.CUT,
    "reset": LinkFaultKind.RESET,
    "heal": LinkFaultKind.HEAL,
    "clear": LinkFaultKind.HEAL,
    "hold": LinkFaultKind.BLACKHOLE,
}
#: The fields each fault takes besides ``fault``.
_FIELDS: Final = {
    LinkFaultKind.LATENCY: ("seconds", "jitter", "duration"),
    LinkFaultKind.BANDWIDTH: ("rate", "duration"),
    LinkFaultKind.RESET: (),
    LinkFaultKind.BLACKHOLE: ("seconds", "duration"),
    LinkFaultKind.CUT: ("seconds", "duration"),
    LinkFaultKind.HEAL: (),
}


def link_control_subject(site: str) -> str:
    """The subject a site's link control listens on.

    >>> link_control_subject("edge")
    'diaspora.control.link.edge.fault'
    """
    if not isinstance(site, str) or not site:
        raise ConfigError(f"link control: site {site!r} must be a non-empty site name")
    return f"{CONTROL_PREFIX}.{token(site)}.fault"


def _kind(value: object) -> LinkFaultKind:
    if isinstance(value, str):
        if value in ALIASES:
            return ALIASES[value]
        try:
            return LinkFaultKind(value)
        except ValueError:
            pass
    known = ", ".join(k.value for k in LinkFaultKind)
    raise ConfigError(
        f"{_WHERE}: field 'fault': {value!r} is not one of {known} (or {', '.join(ALIASES)})"
    )


def _number(value: object, name: str, kind: LinkFaultKind, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"{_WHERE}: field {name!r} of {kind.value} must be a finite number (got {value!r})"
        )
    if value < 0 or (positive and value == 0):
        raise ConfigError(
            f"{_WHERE}: field {name!r} of {kind.value} must be {'>' if positive else '>='} 0 "
            f"(got {value!r})"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class LinkFault:
    """One link fault order, validated; errors name the field.

    ``seconds`` is a latency's added delay (for a cut or blackhole it means
    how long, and is stored as ``duration``); ``jitter`` extra random
    latency; ``rate`` a bandwidth cap in bytes/s; ``duration`` how long a
    lasting fault stays (``None``: until healed).
    """

    kind: LinkFaultKind
    seconds: float | None = None
    jitter: float | None = None
    rate: float | None = None
    duration: float | None = None

    def __post_init__(self) -> None:
        kind = _kind(self.kind)
        object.__setattr__(self, "kind", kind)
        allowed = _FIELDS[kind]
        for name in ("seconds", "jitter", "rate", "duration"):
            value = getattr(self, name)
            if value is None:
                continue
            if name not in allowed:
                takes = ", ".join(allowed) or "no fields"
                raise ConfigError(
                    f"{_WHERE}: field {name!r} does not apply to {kind.value} (it takes {takes})"
                )
            object.__setattr__(self, name, _number(value, name, kind, positive=name == "rate"))
        if kind in (LinkFaultKind.CUT, LinkFaultKind.BLACKHOLE) and self.seconds is not None:
            if self.duration is not None and self.duration != self.seconds:
                raise ConfigError(
                    f"{_WHERE}: fields 'seconds' and 'duration' of {kind.value} disagree "
                    f"({self.seconds!r} vs {self.duration!r}): give one of them"
                )
            object.__setattr__(self, "duration", self.seconds)
            object.__setattr__(self, "seconds", None)
        if kind is LinkFaultKind.LATENCY and self.seconds is None:
            raise ConfigError(f"{_WHERE}: field 'seconds' is missing (latency: the added delay)")
        if kind is LinkFaultKind.BANDWIDTH and self.rate is None:
            raise ConfigError(f"{_WHERE}: field 'rate' is missing (bandwidth: bytes per second)")

    @classmethod
    def from_order(cls, order: object) -> LinkFault:
        """Parse a decoded JSON order (``{"fault": "cut", "seconds": 10}``)."""
        if not isinstance(order, Mapping):
            raise ConfigError(f"{_WHERE}: must be a JSON object, got {type(order).__name__}")
        if "fault" not in order:
            raise ConfigError(f'{_WHERE}: field \'fault\' is missing (e.g. {{"fault": "cut"}})')
        kind = _kind(order["fault"])
        for name in order:
            if name != "fault" and name not in _FIELDS[kind]:
                takes = ", ".join(_FIELDS[kind]) or "no fields"
                raise ConfigError(f"{_WHERE}: unknown field {name!r} for {kind.value} ({takes})")
        return cls(kind, **{name: order[name] for name in _FIELDS[kind] if name in order})

    @classmethod
    def from_json(cls, data: bytes) -> LinkFault:
        """Parse an order as it arrives on the control subject."""
        try:
            order = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{_WHERE}: not JSON ({exc}): {data[:80]!r}") from None
        return cls.from_order(order)

    def as_order(self) -> dict[str, Any]:
        """The JSON-ready order (``fault`` and the fields that are set)."""
        out: dict[str, Any] = {"fault": self.kind.value}
        for name in ("seconds", "jitter", "rate", "duration"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def describe(self) -> str:
        """One line, e.g. ``latency 50ms±10ms for 5s`` or ``cut_link for 10s``."""
        parts = [self.kind.value]
        if self.seconds is not None:
            jitter = f"±{self.jitter * 1000:g}ms" if self.jitter else ""
            parts.append(f"{self.seconds * 1000:g}ms{jitter}")
        if self.rate is not None:
            parts.append(f"{self.rate:g}B/s")
        if self.duration is not None:
            parts.append(f"for {self.duration:g}s")
        return " ".join(parts)


async def link_fault(
    fabric: Fabric,
    site: str,
    fault: str,
    *,
    seconds: float | None = None,
    jitter: float | None = None,
    rate: float | None = None,
    duration: float | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Order the link control of ``site`` to put ``fault`` on its link; return its reply.

    The reply is ``{"ok": true, "site", "fault", ..., "active"}`` (``active``:
    each fault in force and the seconds until it lifts, ``None`` for until
    healed). Raises :class:`~diaspora.errors.LinkControlNotFound` when no
    control serves ``site``, :class:`~diaspora.errors.LinkFaultError` when it
    refuses the order or does not answer, ``ConfigError`` for a bad order
    (before anything is sent). Send orders from the site's side of the link: a
    control across a cut link cannot be reached (the cut lifts itself after
    its duration).

    >>> async def outage(fabric: Fabric) -> None:
    ...     await link_fault(fabric, "edge", "cut", seconds=10)
    ...     await link_fault(fabric, "edge", "latency", seconds=0.05, jitter=0.01, duration=30)
    """
    order = LinkFault(_kind(fault), seconds=seconds, jitter=jitter, rate=rate, duration=duration)
    subject = link_control_subject(site)
    what = f"link fault {order.describe()} for site {site!r}"
    try:
        answer = await fabric.request(
            subject, json.dumps(order.as_order()).encode(), timeout=timeout
        )
    except NoResponders:
        raise LinkControlNotFound(
            f"{what}: nobody serves {subject!r}: is a LinkControl running for site {site!r} "
            "(diaspora run --link-proxy), is the site name right, and is this client on the "
            "site's side of its link?",
            site=site,
        ) from None
    except TimeoutError:
        raise LinkFaultError(
            f"{what}: no answer on {subject!r} within {timeout}s; the order may have been "
            "applied all the same (an answer crossing the link it cut is lost)",
            site=site,
        ) from None
    try:
        reply = json.loads(answer.data)
    except (ValueError, UnicodeDecodeError):
        reply = None
    if not isinstance(reply, dict):
        raise LinkFaultError(
            f"{what}: the answer on {subject!r} is not a JSON object: {answer.data[:80]!r}",
            site=site,
        )
    if reply.get("ok") is not True:
        raise LinkFaultError(
            f"{what}: refused by the link control: {reply.get('error', reply)}",
            site=site,
            reply=reply,
        )
    return reply
