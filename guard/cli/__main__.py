"""`python -m guard.cli`: the `guard` command."""

import sys

from guard.cli import main

sys.exit(main())
