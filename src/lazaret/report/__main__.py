import sys

from lazaret.report import main

sys.exit(main())
