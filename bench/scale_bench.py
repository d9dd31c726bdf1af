"""Scale-out figures: docs/s of the full scan at 1 and 2 workers, and CPU-seconds per GB per stage.

* Full scan (all checks) on the T0 corpus with DirectRunner ``multi_processing`` at 1 and 2 workers (the
  same mode both times, so the speed-up measures parallelism, not the runner), plus the in-process runner.
* Per-stage cost: the scan with ``--checks`` set to one check at a time, in-process, minus the scan with
  no checks (read + decide + write); CPU time of the whole process tree (user + system).

Run: .venv/bin/python bench/scale_bench.py [--n 55185] [--skip-stages] [--skip-workers]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time

from _common import ROOT, machine, need_shared, read_jsonl


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(path: str, out: str, checks: str, extra) -> dict:
    c0, t0 = cpu_children(), time.time()
    subprocess.run([str(ROOT / ".venv" / "bin" / "lazaret"), "scan", path, "--out", out, "--checks", checks,
                    "--quiet", "--no-report", "--overwrite", *extra], check=True)
    wall, cpu = time.time() - t0, cpu_children() - c0
    summary = json.load(open(os.path.join(out, "summary.json")))
    return {"wall": wall, "cpu": cpu, "records": summary["records_in"],
            "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=55185)
    ap.add_argument("--skip-stages", action="store_true")
    ap.add_argument("--skip-workers", action="store_true")
    ap.add_argument("--skip-in-process", action="store_true", help="only the multi_processing runs")
    args = ap.parse_args()
    shared = need_shared()
    rows = read_jsonl(shared / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz", limit=args.n)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t0.jsonl")
        with open(path, "w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
        gb = os.path.getsize(path) / 1e9
        print(f"Scale bench: T0, {len(rows)} records, {gb * 1000:.1f} MB JSONL ({machine()})")
        if not args.skip_workers:
            multi = ["--runner=DirectRunner", "--direct_running_mode=multi_processing"]
            res = {} if args.skip_in_process else {
                "in-process FnApiRunner": run(path, os.path.join(tmp, "a"), "pii,toxicity,dedup,poisoning", [])}
            res.update({
                "multi_processing, 1 worker": run(path, os.path.join(tmp, "b"), "pii,toxicity,dedup,poisoning",
                                                  multi + ["--direct_num_workers=1"]),
                "multi_processing, 2 workers": run(path, os.path.join(tmp, "c"), "pii,toxicity,dedup,poisoning",
                                                   multi + ["--direct_num_workers=2"]),
            })
            print(f"\n{'full scan, all checks':<32}{'wall s':>8}{'docs/s':>9}{'cpu s':>8}")
            for k, v in res.items():
                print(f"{k:<32}{v['wall']:>8.1f}{v['records'] / v['wall']:>9.1f}{v['cpu']:>8.1f}")
            speedup = res["multi_processing, 1 worker"]["wall"] / res["multi_processing, 2 workers"]["wall"]
            print(f"speed-up 1 -> 2 workers (multi_processing): {speedup:.2f}x")
        if not args.skip_stages:
            base = run(path, os.path.join(tmp, "n"), "", [])
            print(f"\n{'stage':<14}{'cpu s':>8}{'cpu s/GB':>10}{'docs/s/core':>13}")
            print(f"{'read+write':<14}{base['cpu']:>8.1f}{base['cpu'] / gb:>10.0f}{base['records'] / base['cpu']:>13.0f}")
            for check in ("pii", "toxicity", "dedup", "poisoning"):
                r = run(path, os.path.join(tmp, check), check, [])
                extra = max(r["cpu"] - base["cpu"], 1e-6)
                print(f"{check:<14}{extra:>8.1f}{extra / gb:>10.0f}{r['records'] / extra:>13.0f}")


if __name__ == "__main__":
    main()
