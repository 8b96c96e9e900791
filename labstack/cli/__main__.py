"""``python -m labstack.cli``: the same as the ``labstack`` script."""

import sys

from labstack.cli import main

sys.exit(main())
