"""Where the PII engine's CPU goes on T0 (issue 21): cProfile over ``PiiEngine.analyze_many`` plus a per-part
split (NER, each Presidio recognizer, the context enhancer), CPU time of this process.

The first N T0 records, instruction, input and output joined into one text (as ``pii_speed.py --end-to-end``),
in batches of the policy's ``batch_size``, with the shipped policy and recognizers. The engine is loaded
before timing starts (model load is start-up, measured end to end by ``pii_speed.py``).

Run: .venv/bin/python bench/pii_profile.py [--n 3000] [--nlp spacy|none] [--top 30] [--no-cprofile]
     [--no-prefilter] [--left-context 200]   (the switches reproduce the state before issue 21's second session)
     [--blis] [--keep-tok2vec] [--ner-window-words 0]   (... and before its third session)
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import functools
import io
import pstats
import time
from typing import Dict

from _common import ROOT, machine, need_shared, read_jsonl


def joined_texts(rows):
    return ["\n\n".join(x for x in (r["instruction"], r.get("input") or "", r["output"]) if x) for r in rows]


def load_engine(nlp: str):
    from lazaret.checks.pii.engine import PiiEngine
    from lazaret.rules.policy import load_policy
    from lazaret.rules.recognizers import load_recognizer_files

    rules = str(ROOT / "rules")
    section = dict(load_policy(f"{rules}/policy.yaml").section("pii"))
    section["nlp"] = nlp
    custom, _ = load_recognizer_files(rules, section["recognizer_files"])
    return PiiEngine(section, custom).load()


def split_timers(engine):
    """Wrap each recognizer's ``analyze``, the NER pass and the context enhancer with CPU timers."""
    spent: Dict[str, float] = collections.Counter()  # type: ignore[name-defined]
    calls: Dict[str, int] = collections.Counter()  # type: ignore[name-defined]

    def timed(label, fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t = time.process_time()
            try:
                return fn(*a, **kw)
            finally:
                spent[label] += time.process_time() - t
                calls[label] += 1
        return wrapper

    for rec in engine.analyzer.registry.recognizers:
        rec.analyze = timed(f"recognizer {rec.name}", rec.analyze)
    engine._ner_entities = timed("NER (sentence split, cache, spaCy)", engine._ner_entities)
    enh = engine.analyzer.context_aware_enhancer
    enh.enhance_using_context = timed("context enhancer (tokens on demand)", enh.enhance_using_context)
    engine.analyzer.analyze = timed("AnalyzerEngine.analyze (all recognizers + context + overlap)",
                                    engine.analyzer.analyze)
    return spent, calls


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--nlp", default="spacy", choices=["spacy", "none"])
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--no-cprofile", action="store_true")
    ap.add_argument("--no-prefilter", action="store_true", help="run every recognizer asked for (no RE2 pass)")
    ap.add_argument("--left-context", type=int, default=None, help="NER left context in characters")
    ap.add_argument("--blis", action="store_true", help="NER matrix products through thinc's blis (before issue 21's "
                    "third session), not numpy's BLAS")
    ap.add_argument("--keep-tok2vec", action="store_true", help="keep the pipeline's unused shared tok2vec")
    ap.add_argument("--ner-window-words", type=int, default=None,
                    help="NER on words around candidate words (0: whole sentences, before issue 21's third session)")
    args = ap.parse_args()
    rows = read_jsonl(need_shared() / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz", limit=args.n)
    texts = joined_texts(rows)
    from lazaret.checks.pii.engine import PiiEngine

    PiiEngine.ner_blas = "blis" if args.blis else "numpy"
    PiiEngine.ner_drop_unused_tok2vec = not args.keep_tok2vec
    if args.ner_window_words is not None:
        PiiEngine.ner_window_words = args.ner_window_words
    engine = load_engine(args.nlp)
    if engine.ner_nlp is not None:
        ops = engine.ner_nlp.get_pipe("ner").model.ops
        print(f"NER pipeline: {engine.ner_nlp.pipe_names}, {type(ops).__name__}(use_blis={ops.use_blis})")
    engine.pattern_prefilter = not args.no_prefilter
    if args.left_context is not None:
        import lazaret.checks.pii.engine as pii_engine

        pii_engine.LEFT_CONTEXT = args.left_context
    batch = engine.section["batch_size"]
    import resource

    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    spent, calls = split_timers(engine)
    prof = None if args.no_cprofile else cProfile.Profile()
    t = time.process_time()
    if prof:
        prof.enable()
    for i in range(0, len(texts), batch):
        engine.analyze_many(texts[i:i + batch])
    if prof:
        prof.disable()
    total = time.process_time() - t
    print(f"PII engine on {len(texts)} T0 records (joined text, batch {batch}, nlp={args.nlp}; {machine()}): "
          f"{total:.2f} CPU-s{' under cProfile' if prof else ''}, {len(texts) / total:.1f} records per CPU-s")
    print(f"{'part':<64}{'CPU-s':>8}{'share':>8}{'calls':>8}")
    for label, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"{label:<64}{s:8.2f}{100 * s / total:7.1f}%{calls[label]:8d}")
    print("engine stats:", dict(sorted(engine.stats.items())))
    print(f"peak RSS of this process: {loaded_mb:.0f} MB with the engine loaded (texts read), "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB after the run")
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
