"""Does the PII stage cost more per byte as the scan grows? (issue 21, twelfth session)

The scan ``lazaret scan FILE --checks pii`` minus ``--checks ''`` (read, decide, write), in-process runner,
CPU time and peak RSS of the scan process (``/usr/bin/time``), on slices of the T0 corpus written as JSONL:
the first N records, the last N, and all of them. Before this session: all 55,185 cost 14,652 PII CPU-s per
GB, the first 10,000 8,559, the last 10,000 10,226 (docs/benchmarks.md). Flat per-byte cost means the whole
file costs about what its slices cost.

Run: .venv/bin/python bench/pii_scan_scale.py [--n 10000] [--slices first,last,all]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile

from _common import ROOT, machine, need_shared, read_jsonl


def scan(path: str, out: str, checks: str) -> dict:
    """CPU-s (user + system) and peak RSS of one scan process."""
    res = subprocess.run(["/usr/bin/time", "-f", "TIME %U %S %M", str(ROOT / ".venv" / "bin" / "lazaret"), "scan",
                          path, "--out", out, "--checks", checks, "--quiet", "--no-report", "--overwrite"],
                         check=True, capture_output=True, text=True)
    m = re.search(r"TIME ([\d.]+) ([\d.]+) (\d+)", res.stderr)
    summary = json.load(open(os.path.join(out, "summary.json")))
    return {"cpu": float(m.group(1)) + float(m.group(2)), "rss_mb": int(m.group(3)) / 1024,
            "records": summary["records_in"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000, help="records in the first and last slices")
    ap.add_argument("--slices", default="first,last,all")
    args = ap.parse_args()
    rows = read_jsonl(need_shared() / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz")
    slices = {"first": rows[:args.n], "last": rows[-args.n:], "all": rows}
    print(f"PII cost per byte by scan size, T0 ({machine()}); CPU-s of the scan process")
    print(f"{'slice':<8}{'records':>8}{'MB':>7}{'no checks s':>12}{'pii s':>8}{'PII s':>8}{'PII s/GB':>10}"
          f"{'docs/s':>8}{'RSS MB none/pii':>17}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.slices.split(","):
            path = os.path.join(tmp, f"{name}.jsonl")
            with open(path, "w", encoding="utf-8") as fh:
                for r in slices[name]:
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
            gb = os.path.getsize(path) / 1e9
            base = scan(path, os.path.join(tmp, "none"), "")
            pii = scan(path, os.path.join(tmp, "pii"), "pii")
            extra = pii["cpu"] - base["cpu"]
            print(f"{name:<8}{pii['records']:>8}{gb * 1000:>7.1f}{base['cpu']:>12.1f}{pii['cpu']:>8.1f}{extra:>8.1f}"
                  f"{extra / gb:>10.0f}{pii['records'] / extra:>8.1f}{base['rss_mb']:>9.0f}/{pii['rss_mb']:.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
