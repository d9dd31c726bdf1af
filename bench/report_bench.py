"""Report size and render time on a fake scan with many quarantined rows (default 50k).

Usage: .venv/bin/python bench/report_bench.py [--quarantined 50000] [--clean 50000] [--keep DIR]
Prints: build time of the fake scan, render time, size of report.html and of all pages, number of
overflow pages, peak RSS; plus `review list` and `gate` times on the same scan.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import fakescan  # noqa: E402

from lazaret.workflow import gate, review  # noqa: E402
from lazaret.workflow.report import Options, render_report  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quarantined", type=int, default=50_000)
    p.add_argument("--clean", type=int, default=50_000)
    p.add_argument("--keep", help="write the scan here and keep it")
    args = p.parse_args()
    base = args.keep or tempfile.mkdtemp(prefix="lazaret-report-bench-")
    d = os.path.join(base, "scan")
    shutil.rmtree(d, ignore_errors=True)
    t0 = time.perf_counter()
    info = fakescan.build_synthetic_scan(d, n_clean=args.clean, n_quarantine=args.quarantined, hostile=True)
    t1 = time.perf_counter()
    n_q = sum(1 for r in info["records"] if r["action"] != "clean")
    print(f"fake scan: {len(info['records']):,} records, {n_q:,} manifest rows, "
          f"{len(info['clusters']):,} clusters, built in {t1 - t0:.1f} s")
    t0 = time.perf_counter()
    paths = render_report(d, Options())
    t1 = time.perf_counter()
    sizes = [os.path.getsize(x) for x in paths]
    print(f"render_report: {t1 - t0:.2f} s; report.html {sizes[0] / 1e6:.2f} MB; {len(paths) - 1} overflow pages, "
          f"largest {max(sizes[1:] or [0]) / 1e6:.2f} MB; all pages {sum(sizes) / 1e6:.1f} MB")
    t0 = time.perf_counter()
    review.main([d, "list", "--limit", "10"], out=io.StringIO())
    t1 = time.perf_counter()
    gate.main([d], out=io.StringIO())
    t2 = time.perf_counter()
    print(f"review list: {t1 - t0:.2f} s; gate: {t2 - t1:.2f} s")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
