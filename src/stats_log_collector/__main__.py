"""``python -m stats_log_collector``: the ``stats-log-collector`` command (only importer of ``cli``)."""

import sys

from .cli import main

sys.exit(main())
