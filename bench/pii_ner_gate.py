"""What narrowing NER's input costs in entities (issue 21, third session): the engine's NER entities on T0
(or the synthetic set) with the shipped gate against two variants, entities lost and gained per label.

* ``--variant strict``: a sentence goes to NER only when a candidate word (capitalised, not a function
  word) is not sentence-initial (not at the start of a sentence, a line, or after ':' or a quote), or is a
  name of the shipped gazetteer. Not shipped: 13% fewer sentences, entities lost (below).
* ``--variant windows``: the shipped ``ner_window_words`` against whole sentences (``ner_window_words = 0``).
* ``--variant places``: the shipped gate against the gate without lower-case place names as candidate
  words (``PiiEngine.place_gate``, issue 21's thirteenth session).

Also prints the characters tagged (cache misses) and the NER CPU-seconds of each side; the machine may be
shared, so CPU-seconds are indicative, characters are exact.

Run: .venv/bin/python bench/pii_ner_gate.py [--variant strict|windows|places] [--data t0|synth] [--n 1000]
"""

from __future__ import annotations

import argparse
import collections
import re
import time

from _common import need_shared, read_jsonl
from pii_profile import joined_texts, load_engine

_INITIAL = re.compile(r"(?:^|[\n:;\"“(\[])\W*$")


def strict_candidate(gazetteer):
    import lazaret.checks.pii.engine as pe

    def has_candidate(sentence: str) -> bool:
        for m in pe._CAPWORD.finditer(sentence):
            w = m.group()
            if w.lower() in pe._FUNCTION_WORDS:
                continue
            if m.start() > 0 and not _INITIAL.search(sentence[max(0, m.start() - 6):m.start()]):
                return True
            if w in gazetteer.given or w in gazetteer.ambiguous or w in gazetteer.surnames:
                return True
        return False

    return has_candidate


def main() -> None:
    import lazaret.checks.pii.engine as pe

    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", default="windows", choices=("strict", "windows", "places"))
    ap.add_argument("--data", default="t0", choices=("t0", "synth"))
    ap.add_argument("--n", type=int, default=1000, help="T0 records")
    args = ap.parse_args()
    shared = need_shared()
    if args.data == "t0":
        texts = joined_texts(read_jsonl(shared / "instruct_t0_train_50k" / "t0_train_50k.jsonl.gz", limit=args.n))
    else:
        texts = [r["text"] for r in read_jsonl(shared / "pii_presidio_synth" / "synth_dataset_v2.jsonl.gz")
                 + read_jsonl(shared / "pii_presidio_synth" / "generated_large.jsonl.gz")]
    engine = load_engine("spacy")
    shipped_gate, shipped_words = pe._has_candidate, engine.ner_window_words

    shipped_places = engine.places

    def run(label: str, gate, words: int, places=shipped_places):
        pe._has_candidate = gate
        engine.places = places
        engine.ner_window_words = words
        engine._cache.clear()
        engine.stats.clear()
        out = []
        t = time.process_time()
        for i in range(0, len(texts), 64):
            out += engine._ner_entities(texts[i:i + 64])
        print(f"{label:<40} NER {time.process_time() - t:6.2f} CPU-s, {engine.stats['sentences_ner']:6d} units and "
              f"{engine.stats['ner_chars_tagged']:8d} characters tagged")
        return out

    if args.variant == "strict":
        base = run("shipped gate", shipped_gate, shipped_words)
        other = run("strict gate (sentence-initial: gazetteer)", strict_candidate(engine.gazetteer), shipped_words)
    elif args.variant == "places":
        base = run("without lower-case place names", shipped_gate, shipped_words, None)
        other = run("with lower-case place names (shipped)", shipped_gate, shipped_words)
    else:
        base = run("whole sentences", shipped_gate, 0)
        other = run(f"windows of {shipped_words} words", shipped_gate, shipped_words)
    lost, gained = collections.Counter(), collections.Counter()
    for a, b in zip(base, other):
        lost.update(lab for *_, lab in set(a) - set(b))
        gained.update(lab for *_, lab in set(b) - set(a))
    total = collections.Counter(lab for ents in base for *_, lab in ents)
    print(f"{args.data}, {len(texts)} texts; entity occurrences per label (base / lost / gained):")
    for lab in sorted(total):
        print(f"  {lab:<14}{total[lab]:7d}{lost[lab]:7d}{gained[lab]:7d}")


if __name__ == "__main__":
    main()
