"""Testing support: real-server fixtures, fault injectors and hypothesis strategies.

Enable the pytest plugin in your ``conftest.py``::

    pytest_plugins = ["diaspora.testing.plugin"]

The injectors, the workflow runner, the fault rig and the report are here;
the hypothesis strategies and state machine (which need ``hypothesis``) are in
:mod:`diaspora.testing.strategies` and :mod:`diaspora.testing.machine`.
"""

from diaspora.testing.injectors import (
    FaultKind,
    FaultSpec,
    FaultStep,
    Injected,
    InjectionError,
    Injector,
)
from diaspora.testing.pids import PidWatcher
from diaspora.testing.proxy import LinkProxy
from diaspora.testing.report import ExampleResult, ReliabilityReport
from diaspora.testing.rig import FaultRig
from diaspora.testing.waiting import wait_until
from diaspora.testing.workflow import Workflow, WorkflowError

__all__ = [
    "ExampleResult",
    "FaultKind",
    "FaultRig",
    "FaultSpec",
    "FaultStep",
    "Injected",
    "InjectionError",
    "Injector",
    "LinkProxy",
    "PidWatcher",
    "ReliabilityReport",
    "Workflow",
    "WorkflowError",
    "wait_until",
]
