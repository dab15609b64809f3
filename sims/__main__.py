"""``python -m sims``: run, list and check fault scenarios (see :mod:`sims.cli`)."""

import sys

from sims.cli import main

sys.exit(main())
