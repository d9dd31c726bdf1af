"""How much NER work the PII engine's sentence cache saves, by the order records reach it (issue 21).

The engine's own gate, sentence split and bounded cache (``PiiEngine._ner_entities``) run on every T0
record's texts (fields and meta, as the scan builds them) in batches of 64 records; spaCy is replaced by a
stub that returns no entity, so only the cache's bookkeeping is measured: how many units and characters
would reach spaCy. Orders: the file's, records one by one at random (``beam.Reshuffle``, before issue 21's
twelfth session), and blocks of consecutive records in random block order (``packing.SpreadInBlocks``).
Characters tagged are what NER's CPU follows (docs/pii.md).

Run: .venv/bin/python bench/pii_cache_order.py [--n 55185] [--cache 20000] [--blocks 1000,2000,5000]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import random
import time

from _common import machine, need_shared, read_jsonl


class _Doc:
    ents = ()


class _StubNer:
    def pipe(self, texts, batch_size=64):
        for _ in texts:
            yield _Doc()

    def __call__(self, text):
        return _Doc()


def record_texts(rows):
    from lazaret.graph.records import build_record, joined_meta

    out = []
    for i, r in enumerate(rows):
        rec = build_record(r, None, "t0.jsonl", i, "0")
        texts = [f[2] for f in rec["fields"]]
        if rec.get("meta"):
            texts.append(joined_meta(rec["meta"])[0])
        out.append(texts)
    return out


def simulate(recs, order, cache_size: int, batch: int = 64) -> collections.Counter:
    import lazaret.checks.pii.engine as pe

    engine = pe.PiiEngine.__new__(pe.PiiEngine)
    engine.use_ner, engine.ner_nlp, engine._blas_threads = True, _StubNer(), contextlib.nullcontext
    engine._cache, engine.stats, engine.section = collections.OrderedDict(), collections.Counter(), {"batch_size": 64}
    saved, pe.CACHE_SIZE = pe.CACHE_SIZE, cache_size
    try:
        for b in range(0, len(order), batch):
            engine._ner_entities([t for i in order[b:b + batch] for t in recs[i]])
    finally:
        pe.CACHE_SIZE = saved
    return engine.stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=55185)
    ap.add_argument("--cache", default="20000", help="cache sizes, comma-separated")
    ap.add_argument("--blocks", default="1000,2000,5000")
    args = ap.parse_args()
    rows = read_jsonl(need_shared() / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz", limit=args.n)
    recs = record_texts(rows)
    n = len(recs)
    shuffled = list(range(n))
    random.Random(1).shuffle(shuffled)
    orders = {"file order": list(range(n)), "records at random": shuffled}
    for size in (int(b) for b in args.blocks.split(",") if b):
        blocks = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
        random.Random(1).shuffle(blocks)
        orders[f"blocks of {size}"] = [i for blk in blocks for i in blk]
    print(f"NER work by record order, first {n} T0 records ({machine()})")
    print(f"{'order':<20}{'cache':>8}{'units':>9}{'to NER':>9}{'chars to NER':>14}{'sim s':>7}", flush=True)
    for cache in (int(c) for c in args.cache.split(",")):
        for name, order in orders.items():
            t = time.process_time()
            st = simulate(recs, order, cache)
            print(f"{name:<20}{cache:>8}{st['ner_units']:>9}{st['sentences_ner']:>9}{st['ner_chars_tagged']:>14,}"
                  f"{time.process_time() - t:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
