"""Triggers: run an action on batches of matching messages or events, exactly once.

A trigger (the Octopus trigger model) watches one subject (a stream or an
event pattern such as ``diaspora.events.actor.*.lag``), keeps the messages a
predicate accepts, cuts them into batches (``batch_size`` messages, or what
``window`` seconds gathered) and fires an action on each batch: a Python
callable, or a built-in (publish a message, start a child, switch a stream's
QoS policy, or just the ``fired`` event every firing publishes). It is a
supervised actor whose checkpoint holds its pending and sealed batches, so
every matching message fires the action once across crashes (see
:mod:`diaspora.triggers._batcher` and docs/triggers.md).

>>> spec = TriggerSpec("hot", "readings", PublishAction("alerts"),
...                    where=Where.from_mapping({"data.level": {">": 3}}), batch_size=10)
>>> spec.where.conditions[0]
Condition(field='data.level', op='>', value=3)
"""

from diaspora.triggers._actions import BATCH_HEADER, TriggerContext, messages_of
from diaspora.triggers._batcher import TriggerStage
from diaspora.triggers._control import (
    CONTROL_PREFIX,
    control_subject,
    request_start_child,
    serve_control,
)
from diaspora.triggers._spec import (
    Action,
    CallAction,
    Condition,
    EventAction,
    PublishAction,
    QosAction,
    Start,
    StartAt,
    StartChildAction,
    TriggerSpec,
    Where,
    action_from_config,
    batch_record,
)
from diaspora.triggers._trigger import Trigger, stage_factory, trigger_runtime

__all__ = [
    "BATCH_HEADER",
    "CONTROL_PREFIX",
    "Action",
    "CallAction",
    "Condition",
    "EventAction",
    "PublishAction",
    "QosAction",
    "Start",
    "StartAt",
    "StartChildAction",
    "Trigger",
    "TriggerContext",
    "TriggerSpec",
    "TriggerStage",
    "Where",
    "action_from_config",
    "batch_record",
    "control_subject",
    "messages_of",
    "request_start_child",
    "serve_control",
    "stage_factory",
    "trigger_runtime",
]
