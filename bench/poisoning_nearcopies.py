"""False positives of the poisoning scan on corpora made of near-copies (clean records only).

    python bench/poisoning_nearcopies.py [--n 20000] [--copies 4] [--kinds response,prompt]

Builds ``--copies`` copies of the first ``--n`` T0 records and runs the poisoning scan alone (signature
rules off) on the real pipeline (``bench/run_scan.py``, FnApiRunner):

* ``response``: copies get a word of the response reversed or suffixed per 50 words (the perturbation of
  ``bench/soak_bench.py``): repeated misspellings look like injected payloads.
* ``prompt``: copies get one prompt word reversed (``poisoning_bench.perturb``, the 4x cost corpus): a short
  prompt's MinHash key changes with one word, so identical answers look like one answer given to many
  prompts.

Every record is clean, so every flagged record is a false positive. Prints flagged records by rule and the
CPU-seconds of the scan.
"""

from __future__ import annotations

import argparse
import collections
import random
import resource
import sys
import time

from _common import ROOT

sys.path.insert(0, str(ROOT))

import bench.poisoning_bench as B  # noqa: E402
from bench.attacks import to_record  # noqa: E402
from bench.run_scan import run_scan  # noqa: E402
from soak_bench import perturb as perturb_response  # noqa: E402


def corpus(rows, copies: int, kind: str):
    if kind == "prompt":
        return B.perturb(rows, copies)
    out, rng = [], random.Random(7)
    for c in range(copies):
        for r in rows:
            r = dict(r, id=f"{r['id']}#{c}")
            if c:
                r["output"] = perturb_response(r["output"], rng)
            out.append(r)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--kinds", default="response,prompt")
    args = ap.parse_args(argv)
    rows = B.load_t0(args.n)
    for kind in args.kinds.split(","):
        recs = [to_record(d) for d in corpus(rows, args.copies, kind)]
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.time()
        findings, clusters = run_scan(recs, {"signatures": False})
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        flagged = [f for f in findings if f["action"] != "none"]
        print(f"{kind:8s} copies={args.copies} records={len(recs)} flagged={len(flagged)} "
              f"({100 * len(flagged) / len(recs):.2f}%) clusters={len(clusters)} "
              f"by rule={dict(collections.Counter(f['rule'] for f in flagged))} "
              f"{time.time() - t:.0f}s wall {cpu:.0f} CPU-s", flush=True)


if __name__ == "__main__":
    main()
