"""Testing support: real-server fixtures, fault injectors and hypothesis strategies.

Enable the pytest plugin in your ``conftest.py``::

    pytest_plugins = ["diaspora.testing.plugin"]

The injectors, the workflow runner, the fault rig and the report are here;
the hypothesis strategies and state machine (which need ``hypothesis``) are in
:mod:`diaspora.testing.strategies` and :mod:`diaspora.testing.machine`.
"""

from diaspora.errors import InjectionError
from diaspora.fabric import LinkProxy
from diaspora.testing._faults import Fault, FaultInjection, FaultOrder, fault_subject
from diaspora.testing._faultspec import FaultKind, FaultSpec, FaultStep, Injected
from diaspora.testing._injectors import Injector
from diaspora.testing._pids import PidWatcher
from diaspora.testing._report import ExampleResult, ReliabilityReport
from diaspora.testing._rig import FaultRig
from diaspora.testing._streams import StoredMessage, read_stream
from diaspora.testing._traffic import check_outputs, publish_input
from diaspora.testing._waiting import wait_until
from diaspora.testing._workflow import Workflow, WorkflowError

__all__ = [
    "ExampleResult",
    "Fault",
    "FaultInjection",
    "FaultKind",
    "FaultOrder",
    "FaultRig",
    "FaultSpec",
    "FaultStep",
    "Injected",
    "InjectionError",
    "Injector",
    "LinkProxy",
    "PidWatcher",
    "ReliabilityReport",
    "StoredMessage",
    "Workflow",
    "WorkflowError",
    "check_outputs",
    "fault_subject",
    "publish_input",
    "read_stream",
    "wait_until",
]
