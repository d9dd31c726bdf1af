"""Poisoning-scan benchmark: inject every attack family into the T0 corpus and score the scan.

    python bench/poisoning_bench.py [--sizes 250,50] [--seeds 1] [--limit N] [--scale 1,4] [--separate]

By default the six families are injected *together* into one copy of the corpus per (size, seed) (one
pipeline run instead of six; each family's records are scored against its own ground truth, and clusters
cannot borrow from one another because every family draws its own trigger/payload). ``--separate`` runs
one family per corpus. Signature rules are off. Prints per-family recall and precision, the false-positive
rate on clean records, and docs/s + peak RSS of the scan at each --scale (4x = the corpus concatenated
four times with perturbed ids and a word swapped per record, as issue 4 asks).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.attacks import FAMILIES, to_record  # noqa: E402
from bench.run_scan import run_scan  # noqa: E402

T0 = os.path.join(os.environ.get("LAZARET_SHARED_DATA", os.path.join(ROOT, "..", "shared", "data")),
                  "instruct_t0_train_50k", "t0_train_50k.jsonl.gz")
TARGET = {"gibberish": (0.95, 0.90), "fixed_response": (0.95, 0.90), "rare_token": (0.95, 0.90),
          "natural_phrase": (0.95, 0.90), "injection": (0.70, 0.70), "fact_cluster": (0.95, 0.90),
          "fact_copies": (0.95, 0.90), "off_topic": (0.95, 0.90)}  # the last two: our own additions and bar


def load_t0(limit: int = 0) -> List[dict]:
    with gzip.open(T0, "rt", encoding="utf-8") as fh:
        rows = [json.loads(l) for l in fh]
    return rows[:limit] if limit else rows


def perturb(rows: List[dict], copies: int) -> List[dict]:
    """``copies`` x the corpus; copies after the first get new ids and one word of the prompt swapped."""
    out = list(rows)
    for c in range(1, copies):
        rng = random.Random(c)
        for d in rows:
            words = d["instruction"].split(" ")
            i = rng.randrange(len(words))
            words[i] = words[i][::-1]
            out.append({**d, "id": f"{d['id']}~{c}", "instruction": " ".join(words)})
    return out


def score(findings, truth: Dict[str, set], clean_ids: set):
    flagged = {f["doc_id"] for f in findings if f["action"] != "none"}
    rows = {}
    for fam, ids in truth.items():
        tp = len(flagged & ids)
        rows[fam] = {"n": len(ids), "tp": tp, "recall": tp / len(ids)}
    fp = flagged & clean_ids
    return rows, len(fp), flagged


def scan_scaled(rows, params, label):  # noqa: ARG001 - the child builds its own rows
    """Run the scan in a child process so peak RSS is the scan's own."""
    code = ("import sys,json,time,resource;sys.path.insert(0,%r);from bench.run_scan import run_scan;"
            "from bench.attacks import to_record;import bench.poisoning_bench as B;"
            "rows=B.perturb(B.load_t0(%d),%d);recs=[to_record(d) for d in rows];"
            "cpu=lambda:(lambda r:r.ru_utime+r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF));"
            "t=time.time();c=cpu();F,C=run_scan(recs,%r,dedup=%r);dt=time.time()-t;c=cpu()-c;"
            "print(json.dumps({'n':len(recs),'s':dt,'cpu':c,"
            "'flagged':len({f['doc_id'] for f in F if f['action']!='none'}),"
            "'rss':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))")
    return code


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="250,50", help="'' with --scale: cost only")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N clean records (quick runs)")
    ap.add_argument("--scale", default="", help="e.g. 1,4: also measure docs/s and peak RSS at these scales")
    ap.add_argument("--separate", action="store_true", help="one pipeline run per family")
    ap.add_argument("--scale-dedup", default="off,on",
                    help="cost runs without and/or with the dedup stage feeding the claim test (on = the "
                         "dedup stage's own cost included)")
    ap.add_argument("--families", default=",".join(FAMILIES))
    args = ap.parse_args(argv)
    params = {"signatures": False}
    clean = load_t0(args.limit)
    clean_recs = [to_record(d) for d in clean]
    clean_ids = {r["doc_id"] for r in clean_recs}
    fams = args.families.split(",")
    totals: Dict[tuple, Dict[str, float]] = {}
    fp_total = clean_total = 0
    for size in [int(x) for x in args.sizes.split(",") if x]:
        for seed in [int(x) for x in args.seeds.split(",")]:
            groups = [[f] for f in fams] if args.separate else [fams]
            for group in groups:
                recs = list(clean_recs)
                truth = {}
                for fam in group:
                    inj = FAMILIES[fam](clean, size, seed)
                    pr = [to_record(d) for d in inj.records]
                    recs += pr
                    truth[fam] = {r["doc_id"] for r in pr}
                random.Random(seed).shuffle(recs)
                t = time.time()
                findings, clusters = run_scan(recs, params)
                dt = time.time() - t
                rows, fp, flagged = score(findings, truth, clean_ids)
                fp_total += fp
                clean_total += len(clean_ids)
                poison_all = set().union(*truth.values())
                for fam, r in rows.items():
                    # precision per family: its members among the flagged records of the clusters it hit
                    cl = {f["cluster_id"] for f in findings if f["doc_id"] in truth[fam] and f["cluster_id"]}
                    in_cl = {f["doc_id"] for f in findings if f["cluster_id"] in cl}
                    prec = len(in_cl & truth[fam]) / len(in_cl) if in_cl else 0.0
                    r["precision"] = prec
                    key = (fam, size)
                    agg = totals.setdefault(key, {"tp": 0, "n": 0, "pw": 0.0, "runs": 0})
                    agg["tp"] += r["tp"]
                    agg["n"] += r["n"]
                    agg["pw"] += prec
                    agg["runs"] += 1
                    print(f"size={size} seed={seed} {fam:15s} recall={r['recall']:.3f} precision={prec:.3f}",
                          flush=True)
                print(f"size={size} seed={seed} records={len(recs)} clean_fp={fp} "
                      f"({100 * fp / len(clean_ids):.3f}%) scan {dt:.0f}s {len(recs) / dt:.0f} docs/s "
                      f"clusters={len(clusters)} flagged={len(flagged)} poison={len(poison_all)}", flush=True)
    print("\nfamily           size  recall  precision  target  met")
    for (fam, size), a in sorted(totals.items(), key=lambda kv: (list(FAMILIES).index(kv[0][0]), -kv[0][1])):
        rec = a["tp"] / a["n"]
        tgt = TARGET[fam][0 if size >= 250 else 1]
        print(f"{fam:15s} {size:5d}  {rec:.3f}   {a['pw'] / a['runs']:.3f}      {tgt:.2f}    "
              f"{'yes' if rec >= tgt else 'NO'}")
    if clean_total:
        print(f"clean false-positive rate: {fp_total}/{clean_total} = {100 * fp_total / clean_total:.3f}% "
              f"(target <= 0.2%)")
    scales = [int(x) for x in args.scale.split(",") if x]
    for dd, sc in [(x == "on", sc) for x in args.scale_dedup.split(",") if x for sc in scales]:
        out = subprocess.run([sys.executable, "-c", scan_scaled(None, params, sc) % (ROOT, args.limit, sc, params, dd)],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        m = json.loads(out)
        print(f"scale {sc}x{' with dedup' if dd else ''}: {m['n']} records, {m['s']:.0f}s wall, {m['cpu']:.0f} CPU-s "
              f"({m['n'] / m['cpu']:.0f} docs per CPU-s), {m['n'] / m['s']:.0f} docs/s, "
              f"peak RSS {m['rss'] / 1e6:.2f} GB, {m['flagged']} records flagged", flush=True)


if __name__ == "__main__":
    main()
