"""``lazaret report DIR``: the self-contained review report (see render.py for the safety rules)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence

from lazaret.workflow.report.render import Options, render_report
from lazaret.workflow.report.safetext import term
from lazaret.workflow.scandir import ScanError

__all__ = ["render_report", "Options", "main"]


def main(argv: Optional[Sequence[str]] = None, out=None) -> int:
    out = out or sys.stdout
    p = argparse.ArgumentParser(prog="lazaret report", description="(Re)render DIR/report.html from a scan.")
    p.add_argument("dir")
    p.add_argument("--top-rows", type=int, default=Options.top_rows, help="rows per section on the first page")
    p.add_argument("--page-rows", type=int, default=Options.page_rows, help="rows per overflow page")
    p.add_argument("--max-pages", type=int, default=Options.max_pages, help="cap on overflow pages")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    t0 = time.perf_counter()
    try:
        paths = render_report(args.dir, Options(top_rows=args.top_rows, page_rows=args.page_rows,
                                                max_pages=args.max_pages))
    except ScanError as exc:
        print(f"lazaret report: {term(exc)}", file=sys.stderr)
        return 2
    if not paths:
        print("lazaret report: DIR must be a local folder", file=sys.stderr)
        return 2
    size = sum(os.path.getsize(x) for x in paths)
    print(f"wrote {term(paths[0])} (+{len(paths) - 1} overflow page(s), {size / 1e6:.2f} MB) in "
          f"{time.perf_counter() - t0:.2f} s", file=out)
    return 0
