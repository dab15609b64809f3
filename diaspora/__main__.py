"""``python -m diaspora``: the same as the ``diaspora`` command."""

import sys

from diaspora.cli import main

sys.exit(main())
