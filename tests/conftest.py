import signal

import pytest
from hypothesis import HealthCheck, settings

# Ctrl-C must reach the processes the tests start and then stop with SIGINT (the CLI's
# dashboard, events --follow, run...). A shell starts a background job (`./.ci/run &`) with
# SIGINT ignored, and an ignored signal stays ignored across exec: those children would
# never stop. A handler (not SIG_IGN) here is reset to the default in every child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# No timing thresholds in tests: hypothesis's per-example deadline and its "input
# generation is slow" check time the machine (two cores shared by xdist workers and
# their nats-servers), not the code. Tests may still set their own settings.
settings.register_profile("diaspora", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("diaspora")

pytest_plugins = ["diaspora.testing.plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="also run the long soak tests (marked soak), e.g. thousands of fault-injection "
        "examples in tests/reliability",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
