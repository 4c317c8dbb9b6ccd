"""``python -m terminal_sdk``: the ``ssc-terminal`` command line."""

import sys

from terminal_sdk.cli import main

sys.exit(main())
