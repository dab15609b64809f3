"""Testing support: real-server fixtures, fault injectors and hypothesis strategies.

Enable the pytest plugin in your ``conftest.py``::

    pytest_plugins = ["diaspora.testing.plugin"]
"""

from diaspora.testing.proxy import LinkProxy
from diaspora.testing.waiting import wait_until

__all__ = ["LinkProxy", "wait_until"]
