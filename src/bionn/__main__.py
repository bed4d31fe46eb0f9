"""``python -m bionn`` is the ``bionn`` command."""

import sys

from bionn.experiment.cli import main

sys.exit(main())
