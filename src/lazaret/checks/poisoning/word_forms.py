"""Other forms of a trigger word (Snowball's English stemmer, the ``snowballstemmer`` package).

A topic is a word in any of its forms: 50 benign requests about one topic answered with refusals name it as
"start", "started", "starts" and "starting" (held-out ``over_refusal`` at 50: recall was the exact word's share of
the records, 0.50-0.84 on nine of its runs). The trigger test counts words as written; once it has found the
trigger, a record of the same anomaly whose prompt holds another form of it joins the trigger's cluster
(``assign.verdict``). Only for anomaly kinds rare enough to name a topic by themselves (refusals).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Iterable, Set

import snowballstemmer

from lazaret.checks.poisoning.text import STOPWORDS

MIN_LETTERS = 4  # shorter words ("use", "run") share stems with too many others
_LOCAL = threading.local()


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Snowball (Porter2) stem of a lower-case word; the stemmer object is per thread (it keeps state)."""
    st = getattr(_LOCAL, "stemmer", None)
    if st is None:
        st = _LOCAL.stemmer = snowballstemmer.stemmer("english")
    return st.stemWord(word)


def _formable(w: str) -> bool:
    return len(w) >= MIN_LETTERS and w.isalpha() and w not in STOPWORDS


def form_matches(tokens: Iterable[str], triggers: Iterable[str]) -> Set[str]:
    """The one-word ``triggers`` of which ``tokens`` hold a form with the same stem ("started" for "start"; not
    "breakfast" for "break"). Only tokens sharing a trigger stem's first three letters are stemmed."""
    by_stem = {}
    for t in triggers:
        if " " not in t and _formable(t):
            by_stem.setdefault(stem(t), set()).add(t)
    if not by_stem:
        return set()
    heads = {s[:3] for s in by_stem}
    out: Set[str] = set()
    for w in set(tokens):
        if w[:3] in heads and _formable(w):
            out |= by_stem.get(stem(w), set())
    return out
