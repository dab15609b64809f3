"""TOML trees for the tests of ``diaspora.testing``."""

from __future__ import annotations

ECHO_NODE = """
[supervisor]
intensity = 10
period = 10.0

[[supervisor.children]]
id = "echo"
actor = "tests.testing.workflow_actors:Echo"
process = true
heartbeat_timeout = 1.0
"""

ECHO_IN_PROCESS = """
[supervisor]
intensity = 10
period = 10.0

[[supervisor.children]]
id = "echo"
actor = "tests.testing.workflow_actors:Echo"
"""

LOSSY = """
[[supervisor.children]]
id = "lossy"
actor = "tests.testing.workflow_actors:Lossy"
"""

GIVES_UP = """
[supervisor]
intensity = 0
period = 60

[[supervisor.children]]
id = "bad"
actor = "tests.supervision.node_workers:AlwaysCrashes"
"""

FAILS_TO_START = """
[[supervisor.children]]
id = "bad"
actor = "tests.supervision.node_workers:FailsOnStart"
"""

STUTTER = """
[[supervisor.children]]
id = "stutter"
actor = "tests.testing.workflow_actors:Stutter"
"""
