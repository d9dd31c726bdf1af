"""``python -m lazaret`` is the same CLI."""

import sys

from lazaret.cli import main

sys.exit(main())
