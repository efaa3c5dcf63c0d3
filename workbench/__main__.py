"""`python -m workbench ...`: the `workbench` command where no console script is installed."""

import sys

from .cli import main

sys.exit(main())
