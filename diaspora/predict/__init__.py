"""Anomaly detection and prediction over the fabric's own events (and any stream of numbers).

- Models (:mod:`diaspora.predict._models`): one protocol, ``update(t, x) ->
  score`` plus ``state()``/``restore(state)`` and, for forecasters,
  ``forecast(h)``. Built-ins: :class:`EwmaZ` (the default), NAB's
  :class:`WindowedGaussian`, river's half-space trees (``hst``, extra
  ``predict``), an LSTM forecaster (``lstm``, extra ``ml``); a user model by
  import path.
- Monitors (:class:`MonitorSpec`, :class:`Monitor`, :func:`monitor_runtime`;
  ``[[monitors]]`` in a workflow file): a supervised, checkpointed actor that
  scores a stream of numbers per key, warns (``diaspora.events.monitor.<name>.warning``
  / ``.resolved``, stored once across restarts) and carries out its actions
  (switch a stream's policy, migrate an actor, a callable), undone on resolve.
- The metrics source (:class:`MetricsSource`, ``[metrics]``): the server's
  own signals (``/connz``, ``/leafz``, ``/jsz``) as ``metrics.<metric>`` streams.
- The NAB scorer (:mod:`diaspora.predict._nab`) and ``python -m
  diaspora.predict.score <nab_dir>``.

See docs/predict.md.

>>> build_model({"kind": "ewma_z", "z": 3.0}).threshold
3.0
"""

from diaspora.predict._metrics import MetricsSource, MetricsSpec, metrics_runtime
from diaspora.predict._models import (
    EwmaZ,
    Forecaster,
    Model,
    WindowedGaussian,
    build_model,
    model_kinds,
)
from diaspora.predict._monitor import Monitor, monitor_runtime, point_of
from diaspora.predict._spec import (
    AlertRule,
    CallAction,
    Condition,
    MigrateAction,
    MonitorSpec,
    PolicyAction,
    ScaleAction,
    parse_action,
    parse_policy,
)
from diaspora.predict._track import Step, Track

__all__ = [
    "AlertRule",
    "CallAction",
    "Condition",
    "EwmaZ",
    "Forecaster",
    "MetricsSource",
    "MetricsSpec",
    "MigrateAction",
    "Model",
    "Monitor",
    "MonitorSpec",
    "PolicyAction",
    "ScaleAction",
    "Step",
    "Track",
    "WindowedGaussian",
    "build_model",
    "metrics_runtime",
    "model_kinds",
    "monitor_runtime",
    "parse_action",
    "parse_policy",
    "point_of",
]
