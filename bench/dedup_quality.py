"""Quality of near-duplicate clustering against exact Jaccard on the same shingles.

Corpus: a random sample of T0 (instruction + "\\n\\n" + output) plus synthetic near-duplicates (random word
edits of sampled records at several rates). Ground truth: every pair with exact Jaccard >= threshold over
the pipeline's own shingles (word n-grams of the normalised text, as 32-bit shingle hashes), found with an
inverted index and prefix filtering (all-pairs similarity join: a pair with J >= t must share one of the
rarest |x| - ceil(t|x|) + 1 shingles of each side, so no qualifying pair is missed), then exact Jaccard.

Reports:
- pair recall: true pairs (J >= threshold) whose two records end in the same cluster;
- drop precision: (dropped record, duplicate_of) pairs with exact J >= threshold (and >= threshold - 0.05).

    .venv/bin/python bench/dedup_quality.py [--sample 20000] [--synthetic 2000] [--params '{"bands": 21}']
        [--dump /tmp/dedupq]   # then: /tmp/benchvenv/bin/python bench/dedup_datatrove.py /tmp/dedupq/in.jsonl \
                               #         /tmp/dtq --compare /tmp/dedupq/ours_removed.txt
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import math
import os
import random
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _dedup_data import doc_id, edit_words, load_t0  # noqa: E402

import apache_beam as beam  # noqa: E402

from lazaret.checks.near_duplicate.normalise import normalise  # noqa: E402
from lazaret.checks.near_duplicate.params import DedupParams  # noqa: E402
from lazaret.checks.near_duplicate.signatures import shingle_hashes  # noqa: E402
from lazaret.checks.near_duplicate.transform import NearDuplicateClusters  # noqa: E402


def build(sample: int, synthetic: int, seed: int):
    recs = load_t0(sample=sample, seed=seed)
    rnd = random.Random(seed + 1)
    rates = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25)
    src = [r for r in recs if len(r["text"].split()) >= 30]
    for i in range(synthetic):
        r = rnd.choice(src)
        recs.append({"doc_id": doc_id(f"syn{i}"), "record_id": f"syn{i}",
                     "text": edit_words(r["text"], rnd, rates[i % len(rates)])})
    return recs


def shingle_sets(recs, n):
    norms = [normalise(r["text"]) for r in recs]
    out = []
    for lo in range(0, len(norms), 2048):
        h, counts = shingle_hashes(norms[lo:lo + 2048], n)
        offs = np.concatenate(([0], np.cumsum(counts)))
        out += [frozenset(h[offs[i]:offs[i + 1]].tolist()) for i in range(len(counts))]
    return out


def true_pairs(sets, t):
    """All pairs (i < j) with exact Jaccard >= t: prefix-filtered inverted index, then exact Jaccard."""
    df = collections.Counter(s for ss in sets for s in ss)
    index = collections.defaultdict(list)
    cands = set()
    for i, ss in enumerate(sets):
        if not ss:
            continue
        ordered = sorted(ss, key=lambda s: (df[s], s))
        prefix = ordered[: len(ss) - math.ceil(t * len(ss)) + 1]
        for s in prefix:
            for j in index[s]:
                cands.add((j, i))
            index[s].append(i)
    pairs = {}
    for i, j in cands:
        a, b = sets[i], sets[j]
        jac = len(a & b) / len(a | b)
        if jac >= t:
            pairs[(i, j)] = jac
    return pairs, len(cands)


def run_pipeline(recs, params, tmp=None):
    tmp = tmp or tempfile.mkdtemp(prefix="dedupq-")
    os.makedirs(tmp, exist_ok=True)
    src = os.path.join(tmp, "in.jsonl")
    with open(src, "w", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r) + "\n")
    t0, c0 = time.time(), time.process_time()
    p = beam.Pipeline(runner="FnApiRunner")
    res = (p | beam.io.ReadFromText(src) | beam.Map(json.loads) | NearDuplicateClusters(params))
    res["findings"] | beam.Map(json.dumps) | beam.io.WriteToText(os.path.join(tmp, "findings"))
    result = p.run()
    result.wait_until_finish()
    wall, cpu = time.time() - t0, time.process_time() - c0
    findings = []
    for f in glob.glob(os.path.join(tmp, "findings*")):
        with open(f, encoding="utf-8") as fh:
            findings += [json.loads(line) for line in fh]
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]}
    return findings, wall, cpu, counters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", type=int, default=20000)
    ap.add_argument("--synthetic", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--compare-removed", help="doc_ids another tool removed (one per line, e.g. datatrove's)")
    ap.add_argument("--dump", help="keep DIR/in.jsonl and write DIR/ours_removed.txt (for dedup_datatrove.py)")
    args = ap.parse_args()
    section = json.loads(args.params)
    params = DedupParams.from_section(section)
    t = params.threshold

    recs = build(args.sample, args.synthetic, args.seed)
    print(f"records: {len(recs)} ({args.sample} T0 sample + {args.synthetic} synthetic); params: {params}")
    t0 = time.time()
    sets = shingle_sets(recs, params.ngram)
    pairs, n_cands = true_pairs(sets, t - 0.05)
    print(f"ground truth: {n_cands} prefix-filter candidates, {len(pairs)} pairs with J >= {t - 0.05:.2f} "
          f"({time.time() - t0:.1f}s)")

    findings, wall, cpu, counters = run_pipeline(recs, section, args.dump)
    if args.dump:
        with open(os.path.join(args.dump, "ours_removed.txt"), "w") as fh:
            fh.write("\n".join(sorted(f["doc_id"] for f in findings if f["action"] == "drop_duplicate")) + "\n")
    assert len(findings) == len(recs), "one finding per record"
    by_id = {f["doc_id"]: f for f in findings}
    idx = {r["doc_id"]: i for i, r in enumerate(recs)}
    cluster = [by_id[r["doc_id"]]["cluster_id"] for r in recs]

    true_hi = [(i, j) for (i, j), jac in pairs.items() if jac >= t]
    hit = sum(1 for i, j in true_hi if cluster[i] is not None and cluster[i] == cluster[j])
    recall = hit / len(true_hi) if true_hi else float("nan")

    drops = [(idx[f["doc_id"]], idx[f["duplicate_of"]]) for f in findings if f["action"] == "drop_duplicate"]
    drops_shingled = [(i, j) for i, j in drops if sets[i] and sets[j]]

    def jac(i, j):
        a, b = sets[i], sets[j]
        return len(a & b) / len(a | b)

    jd = [jac(i, j) for i, j in drops_shingled]
    prec = sum(x >= t for x in jd) / len(jd) if jd else float("nan")
    prec_relaxed = sum(x >= t - 0.05 for x in jd) / len(jd) if jd else float("nan")
    short_drops = len(drops) - len(drops_shingled)

    print(f"pipeline: {wall:.1f}s wall, {cpu:.1f}s CPU ({len(recs) / cpu:.0f} docs per CPU-second)")
    print(f"counters: {json.dumps(counters, sort_keys=True)}")
    print(f"true pairs J >= {t}: {len(true_hi)}; same cluster: {hit}")
    print(f"PAIR RECALL (J >= {t}): {recall:.4f}   target >= 0.95")
    print(f"drops: {len(drops)} ({short_drops} short records, exact only)")
    print(f"DROP PRECISION (exact J to kept record >= {t}): {prec:.4f}   target >= 0.98")
    print(f"drop precision at J >= {t - 0.05:.2f}: {prec_relaxed:.4f}; min J among drops: {min(jd) if jd else 'n/a'}")

    # representative-independent view, for comparing with tools that only list what they removed
    partner = {}
    for (i, j), jac_ij in pairs.items():
        for x in (i, j):
            partner[x] = max(partner.get(x, 0.0), jac_ij)
    removed_sets = {"lazaret": {f["doc_id"] for f in findings if f["action"] == "drop_duplicate"}}
    if args.compare_removed:
        with open(args.compare_removed) as fh:
            removed_sets["other"] = {line.strip() for line in fh if line.strip()}
    for name, rem in removed_sets.items():
        ix = [idx[d] for d in rem if d in idx]
        ok = sum(1 for i in ix if partner.get(i, 0.0) >= t or not sets[i])
        near = sum(1 for i in ix if partner.get(i, 0.0) >= t - 0.05 or not sets[i])
        print(f"{name}: removed {len(ix)}; with a partner at exact J >= {t}: {ok / max(1, len(ix)):.4f}; "
              f"at J >= {t - 0.05:.2f}: {near / max(1, len(ix)):.4f}")
    if "other" in removed_sets:
        a, b = removed_sets["lazaret"], removed_sets["other"]
        print(f"overlap: both {len(a & b)}, only lazaret {len(a - b)}, only other {len(b - a)}")


if __name__ == "__main__":
    main()
