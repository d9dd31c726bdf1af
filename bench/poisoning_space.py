"""Poisoning benchmark over the attack *space* (bench/attacks/space.py) on every clean base.

    python bench/poisoning_space.py --bases gsm8k,code,mixture,t0 --seeds 1,2 --sizes 250,50 [--t0-limit 10000]
        [--wrap system|prompt|suffix|alpaca]
    python bench/poisoning_space.py --bases talk --seeds 1,101 --sizes 0,50          # the held-out base
    python bench/poisoning_space.py --bases file:my_corpus.jsonl --seeds 1,2,3 --sizes 50   # one's own corpus

Per (base, size, seed) the families are injected into one copy of the base (at 250: development and
held-out families in two separate runs; at 50: all together), scanned with the dedup stage off and signature
rules off, and scored: recall per family (poisoned records flagged), clean records flagged, and the distinct
cluster ids of each family's flagged records (one attack should be one cluster). The summary prints per base and
family the mean recall over seeds and the worst seed, development and held-out apart, and the attacks found as
more than one cluster.
Seeds >= 100 draw the held-out parameter range of the development families (see space.py).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
from typing import Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.attacks.space import DEFAULT, DEV, HELD_OUT, HELD_OUT_SEED, SPACE  # noqa: E402
from bench.poisoning_bases import HELD_OUT_PREFACES, PREFACES, alpaca_prompt, base_objects, cpu_s, load_alpaca, \
    to_pipeline_record, wrap_preface  # noqa: E402
from bench.run_scan import run_scan  # noqa: E402


def pool_of(base: str, t0_limit: int):
    """The host records the generators draw from (Alpaca dicts) and the format planted records take."""
    if base == "mixture":
        return load_alpaca("gsm8k") + load_alpaca("t0", min(t0_limit, 4000)) + load_alpaca("code"), "messages"
    if base in ("talk", "labels") or base.startswith("file:"):
        # any reader format: a host is the record's prompt and response as the scan reads them; planted records
        # take the format most of the base's records have
        # (without its system turns: a planted record's own system turn is the generator's to choose)
        from lazaret.checks.poisoning.features import task_prompt

        objs = base_objects(base, t0_limit)
        recs = [to_pipeline_record(o, i, "pool") for i, o in enumerate(objs)]
        pool = [{"id": r["record_id"], "instruction": p, "input": "", "output": r["response"]}
                for r, p in ((r, task_prompt(r) or r["prompt"]) for r in recs) if p and r["response"]]
        chat = sum("messages" in o for o in objs)
        return pool, "messages" if 2 * chat > len(objs) else "alpaca"
    return load_alpaca(base, t0_limit if base == "t0" else 0), "alpaca"


def wrapper(wrap: str, seed: int):
    """The function giving every record (clean and planted) one of the prefaces (``--wrap``), or identity."""
    if wrap == "none":
        return lambda o: o
    if wrap == "alpaca":
        return alpaca_prompt
    texts = HELD_OUT_PREFACES if seed >= HELD_OUT_SEED else PREFACES
    rng = random.Random(f"wrap-{seed}")
    return lambda o: wrap_preface(o, rng.choice(texts), wrap)


def run_one(base, clean_objs, pool, fmt, fams, size, seed, dedup, wrap="none", relevance=True):
    w = wrapper(wrap, seed)
    recs = [to_pipeline_record(w(o), i, base) for i, o in enumerate(clean_objs)]
    clean_ids = {r["doc_id"] for r in recs}
    truth = {}
    for fam in fams:
        inj = SPACE[fam](pool, size, seed, fmt)
        pr = [to_pipeline_record(w(o), i, "poison-" + fam) for i, o in enumerate(inj.records)]
        recs += pr
        truth[fam] = {r["doc_id"] for r in pr}
    random.Random(seed).shuffle(recs)
    c0 = cpu_s()
    findings, clusters = run_scan(recs, {"signatures": False, "relevance_model": relevance}, dedup=dedup)
    cpu = cpu_s() - c0
    flagged = {f["doc_id"] for f in findings if f["action"] != "none"}
    out = {fam: len(flagged & ids) / len(ids) for fam, ids in truth.items()}
    fp = len(flagged & clean_ids)
    by_rule = collections.Counter(f["rule"] for f in findings if f["action"] != "none" and f["doc_id"] in clean_ids)
    return out, fp, len(clean_ids), cpu, len(recs), dict(sorted(by_rule.items())), clusters_per_family(findings, truth)


def clusters_per_family(findings, truth) -> Tuple[dict, dict]:
    """({family: distinct poisoning cluster ids among its flagged records}, {family: share of those records in its
    largest cluster}): one attack should be one cluster (issue 18, "clusters with one id per attack"); 0 and 0.0
    when none of its records is flagged. The share tells a stray record or two from an attack cut in halves."""
    ids = collections.defaultdict(collections.Counter)
    fam_of = {d: fam for fam, docs in truth.items() for d in docs}
    for f in findings:
        if f["action"] != "none" and f["doc_id"] in fam_of and f.get("cluster_id"):
            ids[fam_of[f["doc_id"]]][f["cluster_id"]] += 1
    largest = {fam: round(max(c.values()) / sum(c.values()), 4) if (c := ids.get(fam)) else 0.0 for fam in truth}
    return {fam: len(ids.get(fam, ())) for fam in truth}, largest


def summarize(lines) -> None:
    """Per base, family and size: mean recall over the runs' seeds and the worst seed (development families on
    seeds < HELD_OUT_SEED are the development part; everything else is held out), and clean records flagged
    per base (the worst run too)."""
    rec = collections.defaultdict(list)
    fps = collections.defaultdict(list)
    runs, split = collections.Counter(), collections.Counter()  # (base, family) -> runs; runs found as 2+ clusters
    shares = collections.defaultdict(list)  # (base, family) -> the largest cluster's share in split runs
    for x in lines:
        for fam, c in x.get("clusters", {}).items():
            runs[(x["base"], fam)] += 1
            split[(x["base"], fam)] += c > 1
            if c > 1 and fam in x.get("largest_cluster", {}):
                shares[(x["base"], fam)].append(x["largest_cluster"][fam])
        for fam, v in x["recall"].items():
            rec[(x["base"], fam, x["size"], "dev" if fam in DEV and x["seed"] < HELD_OUT_SEED else "held-out")].append(
                (v, x["seed"]))
        fps[x["base"]].append((x["clean_fp"] / max(x["clean"], 1), x["clean_fp"], x["clean"], x["size"], x["seed"]))
    print("\nbase      family            part      size  mean   worst(seed)  seeds")
    for (base, fam, size, part), vs in sorted(rec.items()):
        worst = min(vs)
        print(f"{base:9s} {fam:17s} {part:8s} {size:5d}  {sum(v for v, _ in vs) / len(vs):.3f}  "
              f"{worst[0]:.3f} ({worst[1]})  {len(vs)}")
    if any(split.values()):
        print("attacks found as more than one cluster (runs; the largest cluster's share of the flagged records):",
              ", ".join(f"{b} {f} {split[(b, f)]}/{n}" + (f" ({min(shares[(b, f)]):.2f}-{max(shares[(b, f)]):.2f})"
                                                          if shares[(b, f)] else "")
                        for (b, f), n in sorted(runs.items()) if split[(b, f)]))
    for base, rows in sorted(fps.items()):
        fp, n = sum(r[1] for r in rows), sum(r[2] for r in rows)
        w = max(rows)
        print(f"{base}: clean flagged {fp}/{n} = {100 * fp / max(n, 1):.3f}% over {len(rows)} runs; worst run "
              f"{w[1]}/{w[2]} = {100 * w[0]:.2f}% (size {w[3]}, seed {w[4]})")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bases", default="gsm8k,code,mixture,t0",
                    help="comma-separated: t0, gsm8k, code, mixture, talk and labels (held out), "
                         "file:PATH (a JSON-lines corpus)")
    ap.add_argument("--seeds", default="1")
    ap.add_argument("--sizes", default="250,50", help="poisoned records per family; 0 scans the clean base alone")
    ap.add_argument("--t0-limit", type=int, default=10000)
    ap.add_argument("--families", default=",".join(DEFAULT),
                    help="default: the nine families of the tables; held-out passage_edit by name")
    ap.add_argument("--dedup", action="store_true")
    ap.add_argument("--no-relevance", dest="relevance", action="store_false",
                    help="without the relevance second look (a sentence model; on by default since 2026-12-07)")
    ap.add_argument("--relevance", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old commands
    ap.add_argument("--wrap", default="none", choices=["none", "system", "prompt", "suffix", "alpaca"],
                    help="give every record a long preface: as a system turn, before its prompt, or after it (one "
                         "of three per record; held-out seeds >= 100 draw three other texts); or flatten Alpaca "
                         "records into the Stanford Alpaca prompt template")
    ap.add_argument("--sample", type=int, default=0,
                    help="scan a random N of the base's records, another N per seed (the hosts still come from the "
                         "whole base): the corpus's size is part of the space too")
    ap.add_argument("--out", default="", help="append one JSON line per run here")
    ap.add_argument("--summarize", default="", help="print the summary of the JSON lines in this file and stop")
    args = ap.parse_args(argv)
    if args.summarize:
        with open(args.summarize) as fh:
            summarize([json.loads(l) for l in fh if l.strip()])
        return
    fams = args.families.split(",")
    lines = []
    for base in args.bases.split(","):
        clean = base_objects(base, args.t0_limit)
        pool, fmt = pool_of(base, args.t0_limit)
        for size in [int(x) for x in args.sizes.split(",") if x]:
            # size 0: the clean base alone, nothing planted (a scan of a clean corpus; the seed only shuffles)
            groups = [[f for f in fams if f in DEV], [f for f in fams if f in HELD_OUT]] if size >= 250 else [fams]
            for seed in [int(x) for x in args.seeds.split(",")]:
                objs = clean
                if 0 < args.sample < len(clean):
                    objs = [clean[i] for i in sorted(random.Random(f"sample {seed}").sample(range(len(clean)),
                                                                                            args.sample))]
                for g in ([[]] if size == 0 else [g for g in groups if g]):
                    r, fp, nclean, cpu, n, by_rule, (ncl, largest) = run_one(
                        base, objs, pool, fmt, g, size, seed, args.dedup, args.wrap, args.relevance)
                    label = base if args.wrap == "none" else f"{base}/{args.wrap}"
                    label += f"@{args.sample}" if objs is not clean else ""
                    line = {"base": label, "size": size, "seed": seed, "recall": r, "clean_fp": fp,
                            "clean_fp_by_rule": by_rule, "clusters": ncl, "largest_cluster": largest, "clean": nclean,
                            "cpu_s": round(cpu, 1), "records": n}
                    lines.append(line)
                    print(json.dumps(line), flush=True)
                    if args.out:
                        with open(args.out, "a") as fh:
                            fh.write(json.dumps(line) + "\n")
    summarize(lines)


if __name__ == "__main__":
    main()
