"""Soak: the full scan over K x the T0 corpus (concatenated with small random edits), sampling the resident
memory of the whole process tree over time. Memory must stay flat as the run goes on.

Run: .venv/bin/python bench/soak_bench.py [--copies 4] [--workers 1] [--interval 5] [--checks ...] [--csv f]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import tempfile
import time

import psutil

from _common import ROOT, machine, need_shared, read_jsonl


def perturb(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    for _ in range(max(1, len(words) // 50)):
        i = rng.randrange(len(words))
        words[i] = words[i][::-1] if rng.random() < 0.5 else words[i] + rng.choice("abcdefgh")
    return " ".join(words)


def rss_mb(proc: psutil.Process) -> tuple:
    """(launcher/runner process RSS, largest SDK worker RSS, whole tree RSS) in MB."""
    own = 0.0
    workers = []
    try:
        own = proc.memory_info().rss / 2 ** 20
        children = proc.children(recursive=True)
    except psutil.Error:
        children = []
    for p in children:
        try:
            workers.append(p.memory_info().rss / 2 ** 20)
        except psutil.Error:
            pass
    return own, max(workers, default=0.0), own + sum(workers)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--limit", type=int, default=None, help="records of T0 per copy (default: all)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--checks", default="pii,toxicity,dedup,poisoning")
    ap.add_argument("--pii-nlp", default="spacy")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--policy", default=None, help="policy file passed to the scan (default: the packaged one)")
    args = ap.parse_args()
    shared = need_shared()
    rows = read_jsonl(shared / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz", limit=args.limit)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "soak.jsonl")
        n = 0
        with open(path, "w", encoding="utf-8") as fh:
            for copy in range(args.copies):
                for r in rows:
                    r = dict(r, id=f"{r['id']}#{copy}")
                    if copy:
                        r["output"] = perturb(r["output"], rng)
                    fh.write(json.dumps(r, ensure_ascii=False) + "\n")
                    n += 1
        extra = ([] if args.workers == 1 else
                 ["--runner=DirectRunner", "--direct_running_mode=multi_processing",
                  f"--direct_num_workers={args.workers}"])
        cmd = [str(ROOT / ".venv" / "bin" / "lazaret"), "scan", path, "--out", os.path.join(tmp, "out"),
               "--checks", args.checks, "--pii-nlp", args.pii_nlp, "--quiet", "--no-report", *extra]
        if args.policy:
            cmd += ["--policy", args.policy]
        t0 = time.time()
        proc = subprocess.Popen(cmd)
        ps = psutil.Process(proc.pid)
        samples = []
        log = open(args.csv, "w") if args.csv else None  # written as we go: a killed run keeps its samples
        if log:
            log.write("seconds,runner_mb,largest_worker_mb,tree_mb\n")
        while proc.poll() is None:
            samples.append((time.time() - t0, *rss_mb(ps)))
            if log:
                log.write("%.1f,%.1f,%.1f,%.1f\n" % samples[-1])
                log.flush()
            time.sleep(args.interval)
        if log:
            log.close()
        wall = time.time() - t0
        if proc.returncode != 0:
            raise SystemExit(f"scan failed with exit {proc.returncode}")
    print(f"Soak: {n} records ({args.copies} x T0), checks {args.checks}, pii-nlp {args.pii_nlp}, "
          f"{args.workers} worker(s) ({machine()})")
    print(f"wall {wall:.0f} s, {n / wall:.1f} records/s")
    if samples:
        q = max(1, len(samples) // 4)
        print(f"{'peak RSS, MB':<18}{'runner':>10}{'largest worker':>16}{'whole tree':>12}")
        for name, part in (("first quarter", samples[:q]), ("second quarter", samples[q:2 * q]),
                           ("third quarter", samples[2 * q:3 * q]), ("last quarter", samples[3 * q:])):
            if part:
                print(f"{name:<18}{max(s[1] for s in part):>10.0f}{max(s[2] for s in part):>16.0f}"
                      f"{max(s[3] for s in part):>12.0f}")
        print(f"{len(samples)} samples every {args.interval:.0f} s")



if __name__ == "__main__":
    main()
