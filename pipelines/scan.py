"""Beam entry point: ``python pipelines/scan.py INPUT... --out DIR [Beam options]``.

The same pipeline as ``lazaret scan``, for Beam users who launch pipelines as scripts (Dataflow templates,
Flink/Spark job submission wrappers). Runner option sets live in ``pipelines/runners/*.args``:

    python pipelines/scan.py sample_data --out out/s $(cat pipelines/runners/direct-multiprocess.args)
"""

import sys

from lazaret.cli import main

if __name__ == "__main__":
    sys.exit(main(["scan", *sys.argv[1:]]))
