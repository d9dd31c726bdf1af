"""Lazaret's PII engine vs plain Presidio and spaCy NER alone, same process, same T0 texts, CPU time (robust to load).

Run: .venv/bin/python bench/pii_engine_vs_ner.py [--n 1500]
"""

from __future__ import annotations

import argparse
import time

from _common import ROOT, machine, need_shared, read_jsonl


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1500)
    args = ap.parse_args()
    shared = need_shared()
    import spacy

    from lazaret.checks.pii.engine import SPACY_MODEL, PiiEngine
    from lazaret.rules.policy import load_policy
    from lazaret.rules.recognizers import load_recognizer_files

    rules = str(ROOT / "rules")
    section = load_policy(f"{rules}/policy.yaml").section("pii")
    custom, _ = load_recognizer_files(rules, section["recognizer_files"])
    engine = PiiEngine(section, custom).load()
    texts = []
    for r in read_jsonl(shared / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz", limit=args.n):
        texts += [r["instruction"] + (("\n\n" + r["input"]) if r.get("input") else ""), r["output"]]
    nlp = spacy.load(SPACY_MODEL, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
    from lazaret.checks.pii.engine import offline_tldextract

    offline_tldextract()
    from presidio_analyzer import AnalyzerEngine, BatchAnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    plain = BatchAnalyzerEngine(analyzer_engine=AnalyzerEngine(
        nlp_engine=SpacyNlpEngine(models=[{"lang_code": "en", "model_name": SPACY_MODEL}])))
    t = time.process_time()
    list(plain.analyze_iterator(texts, language="en", batch_size=64))
    base = time.process_time() - t
    print(f"plain Presidio BatchAnalyzerEngine (same model): {args.n / base:.1f} records/CPU-s")
    print(f"PII engine vs NER alone, {args.n} T0 records (prompt + response), CPU time ({machine()})")
    for rep in range(2):
        t = time.process_time()
        for _ in nlp.pipe(texts, batch_size=64):
            pass
        ner = time.process_time() - t
        engine._cache.clear()
        t = time.process_time()
        for i in range(0, len(texts), 128):
            engine.analyze_many(texts[i:i + 128])
        ours = time.process_time() - t
        print(f"run {rep + 1}: spaCy NER alone {args.n / ner:.1f} records/CPU-s; "
              f"lazaret engine (NER + all recognizers) {args.n / ours:.1f} records/CPU-s")


if __name__ == "__main__":
    main()
