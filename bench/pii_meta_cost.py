"""What scanning every string of a record (issue 19 item 2) costs the PII check, on T0 records.

T0 records carry an id, a source and a template name besides the alpaca text fields; the PII check now
scans those (and the object keys) as one extra ``meta`` text per record. This runs the PII DoFn's analysis
(the same code the scan runs, one process, batches of 64) on the first N records with and without the
meta text, and prints CPU seconds (process time) and records per CPU second for each NLP setting.

Run: .venv/bin/python bench/pii_meta_cost.py [--n 2000] [--nlp none spacy]
"""

from __future__ import annotations

import argparse
import json
import time

from _common import machine, need_shared, read_jsonl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--nlp", nargs="+", default=["none", "spacy"])
    args = ap.parse_args()
    from lazaret.checks.pii.transform import PiiDoFn
    from lazaret.graph.records import build_record, sha256_hex
    from lazaret.rules.policy import load_policy

    rows = read_jsonl(need_shared() / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz", args.n + 64)
    records = [build_record(r, None, "t0.jsonl", i, sha256_hex(json.dumps(r).encode())) for i, r in enumerate(rows)]
    records, warm = records[:args.n], records[args.n:]
    bare = [dict(r, meta=[]) for r in records]
    section = load_policy(None).sections["pii"]
    print(f"PII check, {len(records)} T0 records, {machine()} (shared machine)")
    for nlp in args.nlp:
        for name, recs in (("text fields only", bare), ("+ meta (every string)", records)):
            # a fresh engine per variant: the NER cache of one run must not speed up the other
            fn = PiiDoFn(dict(section, nlp=nlp), [])
            fn.setup()
            list(fn._analyze(warm))  # warm-up on records outside the measured ones
            t = time.process_time()
            found = 0
            for i in range(0, len(recs), 64):
                found += sum(1 for f in fn._analyze(recs[i:i + 64]) if f["side"] == "meta")
            cpu = time.process_time() - t
            print(f"  nlp={nlp:<6} {name:<22} {cpu:7.2f} CPU-s  {len(recs) / cpu:7.0f} records/CPU-s  "
                  f"meta findings {found}")


if __name__ == "__main__":
    main()
