"""``python -m stats_log_collector`` is the ``stats-log-collector`` command."""

import sys

from .cli import main

sys.exit(main())
