"""The trigger actor: a supervised actor whose work is done by its :class:`TriggerStage`.

>>> from diaspora.triggers import PublishAction, TriggerSpec
>>> spec = TriggerSpec("hot", "readings", PublishAction("alerts"), batch_size=5)
>>> runtime = trigger_runtime(spec, fabric=None, id="hot")  # type: ignore[arg-type]
>>> runtime.id, runtime.inputs
('hot', ('readings',))
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from diaspora.actor import Actor, ActorRuntime
from diaspora.stage import Stage
from diaspora.triggers._batcher import TriggerStage
from diaspora.triggers._spec import TriggerSpec

if TYPE_CHECKING:
    from diaspora.fabric import Fabric
    from diaspora.message import Message

__all__ = ["Trigger", "stage_factory", "trigger_runtime"]


class Trigger(Actor):
    """Consumes ``spec.subject``; its :class:`TriggerStage` matches, batches and fires.

    Run it with :func:`trigger_runtime` or, in a tree,
    :func:`diaspora.workflow.trigger_child` (both add the stage). Its state
    (the pending and sealed batches) is the stage's checkpoint section.
    """

    checkpoint_interval = 5.0

    def __init__(self, spec: TriggerSpec) -> None:
        if not isinstance(spec, TriggerSpec):
            raise TypeError(f"Trigger(spec=...) needs a TriggerSpec, got {spec!r}")
        self.spec = spec

    async def handle(self, msg: Message) -> None:
        """Nothing to do here: the stage before ``handle`` has taken what matches."""

    @property
    def stage(self) -> TriggerStage:
        """The stage running this trigger (while it runs)."""
        for stage in self._runtime.stages:
            if isinstance(stage, TriggerStage):
                return stage
        raise RuntimeError(f"trigger {self.id!r} runs without its TriggerStage")


def _make_stage(spec: TriggerSpec) -> Stage:
    return TriggerStage(spec)


def stage_factory(spec: TriggerSpec) -> functools.partial[Stage]:
    """The runtime stage factory of ``spec`` (module-level, so that it pickles)."""
    return functools.partial(_make_stage, spec)


def trigger_runtime(
    spec: TriggerSpec, fabric: Fabric, *, id: str | None = None, **kwargs: Any
) -> ActorRuntime:
    """The runtime of one trigger (id default ``trigger-<name>``); ``kwargs`` go to
    :class:`~diaspora.actor.ActorRuntime` (``stages`` are added after the trigger's)."""
    stages = (stage_factory(spec), *kwargs.pop("stages", ()))
    return ActorRuntime(
        Trigger,
        fabric,
        id=id or f"trigger-{spec.name}",
        args={"spec": spec},
        inputs=(spec.subject,),
        stages=stages,
        **kwargs,
    )
