"""CPU cost of the poisoning stage for two source trees, interleaved (A, B, A, B, ...) so both meet the same
machine load.

    python bench/poisoning_cost_ab.py --n 20000 --rounds 2 --src /path/to/old/src --src src

Each run is a child process with ``PYTHONPATH`` set to one tree's ``src``; it scans the first ``--n`` T0
records (``bench/poisoning_bases.py``'s T0 base) with the poisoning stage alone (dedup off, signature rules
off) on the in-process FnApiRunner and prints its CPU-seconds, records per CPU-second and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import resource, sys, time
sys.path.insert(0, %r)
import lazaret
from bench.poisoning_bases import base_objects, to_pipeline_record
from bench.run_scan import run_scan
recs = [to_pipeline_record(o, i, "t0") for i, o in enumerate(base_objects("t0", %d))]
t, w = time.process_time(), time.time()
findings, _ = run_scan(recs, {"signatures": False}, dedup=False)
cpu = time.process_time() - t
print(f"{lazaret.__file__}: {len(recs)} records, {cpu:.1f} CPU-s, {len(recs) / cpu:.0f} per CPU-s, "
      f"{time.time() - w:.0f} s wall, flagged {sum(f['action'] != 'none' for f in findings)}, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB", flush=True)
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--src", action="append", required=True, help="a source tree's src folder (repeat)")
    args = ap.parse_args(argv)
    for _ in range(args.rounds):
        for src in args.src:
            env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
            subprocess.run([sys.executable, "-c", CHILD % (ROOT, args.n)], env=env, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
