import sys

from lazaret.workflow.report import main

sys.exit(main())
