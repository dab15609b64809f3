"""What a monitor's actions do on a warning, and how each is undone when the alert resolves.

- ``policy:<subject>=<policy>``: the running consumers of the stream are
  switched into the policy at once, whatever their bounds say
  (:func:`~diaspora.streams._registry.force_policy`: a ``policy_on`` event
  from each, ``reason = "forced by monitor <name>"``), and the stream's
  declared QoS (KV ``diaspora-qos``, read by consumers that start later)
  gets the new policy, its other bounds kept. On resolve the consumers are
  released to their own measurements and the previous policy (kept in the
  monitor's checkpoint) is declared again. Both are idempotent, so a replay
  after a restart is harmless.
- ``migrate:<actor>=<to>[,<back>]``: :func:`diaspora.compute.migrate` moves
  the actor to worker ``to``; on resolve, back to ``back`` if given.
- ``scale:<pool>.<site>=+N``: :func:`diaspora.compute.scale_pool` asks the
  pool's controller for ``N`` workers over the site's minimum on behalf of
  ``monitor <name> <key>``; on resolve the request is withdrawn (``0``).
  Each asker's request replaces its last, so a replay has one effect.
- ``call:pkg.mod:fn``: ``fn(event)`` with the warning or resolved event
  (sync or async; at least once across restarts: dedupe on
  ``(event.name, event.key, event.alert)``).

An action that fails is reported (``MonitorAction`` with ``ok = false``),
never raised: a monitor that crash-looped on a refused migration would stop
watching.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any

from diaspora.compute import migrate, scale_pool
from diaspora.errors import DiasporaError
from diaspora.predict._spec import Action, CallAction, MigrateAction, PolicyAction, ScaleAction
from diaspora.streams._qos import OverloadPolicy, QosSpec
from diaspora.streams._registry import declare_qos, force_policy, lookup_qos

if TYPE_CHECKING:
    from diaspora.events import Event
    from diaspora.fabric import Fabric

__all__ = ["apply", "describe", "revert"]


def describe(action: Action) -> str:
    """The action as written in the config."""
    if isinstance(action, PolicyAction):
        return f"policy:{action.subject}={action.policy}"
    if isinstance(action, MigrateAction):
        back = f",{action.back}" if action.back else ""
        return f"migrate:{action.actor}={action.to}{back}"
    if isinstance(action, ScaleAction):
        return f"scale:{action.pool}.{action.site}=+{action.extra}"
    return f"call:{action.path}"


async def apply(fabric: Fabric, action: Action, event: Event, undo: Any) -> Any:
    """Carry ``action`` out; return what :func:`revert` needs (``undo``: a replay's earlier one)."""
    if isinstance(action, PolicyAction):
        current = await lookup_qos(fabric, action.subject)
        wanted = action.overload_policy()
        if undo is None:  # the first time: remember what to go back to
            undo = {"policy": None if current is None else current.policy.to_config()}
        base = current or QosSpec(where=f"qos {action.subject}")
        if base.policy != wanted:
            await declare_qos(fabric, action.subject, dataclasses.replace(base, policy=wanted))
        await force_policy(fabric, action.subject, wanted, by=f"monitor {event.name}")
        return undo
    if isinstance(action, MigrateAction):
        if undo is None:
            await migrate(fabric, action.actor, to=action.to)
        return {"migrated": True}
    if isinstance(action, ScaleAction):
        want = await scale_pool(
            fabric,
            action.pool,
            action.site,
            action.extra,
            by=_asker(event),
            request=_id(action, event),
        )
        return {"want": want}
    await _call(action, event)
    return {"called": True}


async def revert(fabric: Fabric, action: Action, event: Event, undo: Any) -> None:
    """Undo ``action`` (``undo``: what :func:`apply` returned)."""
    if isinstance(action, PolicyAction):
        previous = (undo or {}).get("policy")
        policy = OverloadPolicy() if previous is None else OverloadPolicy.from_config(previous)
        current = await lookup_qos(fabric, action.subject)
        if current is not None and current.policy != policy:
            await declare_qos(fabric, action.subject, dataclasses.replace(current, policy=policy))
        await force_policy(fabric, action.subject, None, by=f"monitor {event.name}")
    elif isinstance(action, MigrateAction):
        if action.back is not None and undo is not None:  # only what the warning moved
            await migrate(fabric, action.actor, to=action.back)
    elif isinstance(action, ScaleAction):
        await scale_pool(
            fabric, action.pool, action.site, 0, by=_asker(event), request=_id(action, event)
        )
    else:
        await _call(action, event)


def _asker(event: Event) -> str:
    """Who asks a pool for workers: the monitor and the key (one request per alerting key)."""
    key = getattr(event, "key", None)
    return f"monitor {event.name}" + (f" {key}" if key else "")


def _id(action: Action, event: Event) -> str:
    """The request's id: the same for a replay of the same alert's step (answered once)."""
    key, alert = getattr(event, "key", ""), getattr(event, "alert", "")
    return f"{describe(action)}:{event.name}:{key}:{alert}:{event.kind}"


async def _call(action: CallAction, event: Event) -> None:
    result = action.load(f"actions: call:{action.path}")(event)
    if inspect.isawaitable(result):
        await result


def failure(exc: BaseException) -> str:
    """The ``detail`` of a failed action."""
    if isinstance(exc, DiasporaError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
