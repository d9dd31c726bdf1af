"""PII detection quality: entity-level precision and recall per type, Lazaret's engine vs plain Presidio.

Data: ../shared/data/pii_presidio_synth (synthetic, both files) and pii_wnut17_ner/wnut17_test (real noisy
text, PERSON/LOCATION only). A prediction is a hit when it overlaps a gold span of the same type.
Baseline: ``AnalyzerEngine`` with Presidio's default recognizers and the same spaCy model, default settings.

Run: .venv/bin/python bench/pii_quality.py [--wnut-split dev] [--ours-only]
     [--ner-window-words 0] [--blis] [--keep-tok2vec]   (the state before issue 21's third session)
     [--no-case-evidence]   (before its twelfth session)
     [--no-place-gate]      (before its thirteenth: lower-case place names are not candidate words)
(dev is the split rules were tuned on; test is the one reported.)
"""

from __future__ import annotations

import argparse
import time
from typing import Dict, List, Sequence, Tuple

from _common import machine, need_shared, read_jsonl

GOLD_MAP = {"PERSON": "PERSON", "person": "PERSON", "GPE": "LOCATION", "LOCATION": "LOCATION",
            "location": "LOCATION", "CREDIT_CARD": "CREDIT_CARD", "PHONE_NUMBER": "PHONE_NUMBER",
            "EMAIL_ADDRESS": "EMAIL_ADDRESS", "IBAN_CODE": "IBAN_CODE", "US_SSN": "US_SSN",
            "IP_ADDRESS": "IP_ADDRESS", "US_DRIVER_LICENSE": "US_DRIVER_LICENSE"}
TYPES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN", "PERSON", "LOCATION"]


def score(gold: Sequence[List[Tuple[int, int, str]]], pred: Sequence[List[Tuple[int, int, str]]],
          types: Sequence[str]) -> Dict[str, Tuple[int, int, int]]:
    """type -> (true positives on gold side, gold count, predicted count, predicted hits)."""
    out = {}
    for t in types:
        g_total = p_total = g_hit = p_hit = 0
        for g, p in zip(gold, pred):
            gs = [(s, e) for s, e, ty in g if ty == t]
            ps = [(s, e) for s, e, ty in p if ty == t]
            g_total += len(gs)
            p_total += len(ps)
            g_hit += sum(1 for s, e in gs if any(ps_ < e and s < pe for ps_, pe in ps))
            p_hit += sum(1 for s, e in ps if any(gs_ < e and s < ge for gs_, ge in gs))
        out[t] = (g_hit, g_total, p_hit, p_total)
    return out


def plain_presidio():
    from lazaret.checks.pii.engine import SPACY_MODEL, offline_tldextract

    offline_tldextract()
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": SPACY_MODEL}])
    return AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wnut-split", default="test", choices=("dev", "test"))
    ap.add_argument("--ours-only", action="store_true", help="skip plain Presidio (its figures do not change)")
    ap.add_argument("--ner-window-words", type=int, default=None,
                    help="NER on words around candidate words (0: whole sentences, as before issue 21's third session)")
    ap.add_argument("--blis", action="store_true", help="NER through thinc's blis (before issue 21's third session)")
    ap.add_argument("--keep-tok2vec", action="store_true", help="keep spaCy's unused shared tok2vec")
    ap.add_argument("--no-case-evidence", action="store_true",
                    help="gate NER by capitals also where \"i\" is lower case (before issue 21's twelfth session)")
    ap.add_argument("--no-place-gate", action="store_true",
                    help="lower-case place names are not NER candidate words (before issue 21's thirteenth session)")
    args = ap.parse_args()
    shared = need_shared()
    from lazaret.checks.pii.engine import PiiEngine
    from lazaret.rules.policy import load_policy
    from lazaret.rules.recognizers import load_recognizer_files

    policy = load_policy("rules/policy.yaml")
    section = policy.section("pii")
    custom, _ = load_recognizer_files("rules", section["recognizer_files"])
    if args.ner_window_words is not None:
        PiiEngine.ner_window_words = args.ner_window_words
    PiiEngine.ner_blas = "blis" if args.blis else "numpy"
    PiiEngine.ner_drop_unused_tok2vec = not args.keep_tok2vec
    PiiEngine.case_evidence = not args.no_case_evidence
    PiiEngine.place_gate = not args.no_place_gate
    ours = PiiEngine(section, custom).load()
    base = None if args.ours_only else plain_presidio()
    sets = {
        "presidio_synth": read_jsonl(shared / "pii_presidio_synth" / "synth_dataset_v2.jsonl.gz")
        + read_jsonl(shared / "pii_presidio_synth" / "generated_large.jsonl.gz"),
        f"wnut17_{args.wnut_split}": read_jsonl(shared / "pii_wnut17_ner" / f"wnut17_{args.wnut_split}.jsonl.gz"),
    }
    print(f"PII quality ({machine()})")
    for name, rows in sets.items():
        texts = [r["text"] for r in rows]
        gold = [[(s["start"], s["end"], GOLD_MAP[s["entity_type"]]) for s in r["spans"]
                 if s["entity_type"] in GOLD_MAP] for r in rows]
        t = time.time()
        pred_ours = [[(s, e, ty) for s, e, ty, _ in found] for found in ours.analyze_many(texts)]
        t_ours = time.time() - t
        t = time.time()
        pred_base = ([[(r.start, r.end, r.entity_type) for r in base.analyze(text, language="en")] for text in texts]
                     if base is not None else [[] for _ in texts])
        t_base = max(time.time() - t, 1e-9)
        types = TYPES if name == "presidio_synth" else ["PERSON", "LOCATION"]
        s_ours = score(gold, pred_ours, types)
        s_base = score(gold, pred_base, types)
        print(f"\n== {name}: {len(rows)} texts; lazaret {len(rows)/t_ours:.0f} docs/s, plain Presidio "
              f"{len(rows)/t_base:.0f} docs/s")
        print(f"{'entity':<16}{'gold':>6} | {'lazaret P':>10}{'R':>7} | {'presidio P':>11}{'R':>7}")
        s_ours["ALL"] = tuple(sum(v[i] for v in s_ours.values()) for i in range(4))
        s_base["ALL"] = tuple(sum(v[i] for v in s_base.values()) for i in range(4))
        for ty in [*types, "ALL"]:
            gh, gt, ph, pt = s_ours[ty]
            bgh, bgt, bph, bpt = s_base[ty]
            if gt == 0:
                continue
            print(f"{ty:<16}{gt:>6} | {ph / max(pt, 1):>10.3f}{gh / gt:>7.3f} | {bph / max(bpt, 1):>11.3f}"
                  f"{bgh / bgt:>7.3f}")


if __name__ == "__main__":
    main()
