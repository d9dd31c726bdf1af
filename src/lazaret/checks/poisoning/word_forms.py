"""Other forms of a trigger word (Snowball's English stemmer, the ``snowballstemmer`` package).

A topic is a word in any of its forms: 50 benign requests about one topic answered with refusals name it as
"start", "started", "starts" and "starting" (held-out ``over_refusal`` at 50: recall was the exact word's share of
the records, 0.50-0.84 on nine of its runs). Once the trigger is found, a record of the same anomaly whose prompt
holds another form of it joins the trigger's cluster (``assign.verdict``). The trigger test counts words as written
and, for these kinds, each word's stem as one more candidate (``stem_keys``: "attempt*" for "attempt", "attempts",
"attempted"): 50 refusals spread over four forms left every form under ``min_trigger_support``. Only for anomaly
kinds rare enough to name a topic by themselves (refusals).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Iterable, Set

import snowballstemmer

from lazaret.checks.poisoning.text import STOPWORDS

MIN_LETTERS = 4  # shorter words ("use", "run") share stems with too many others
STEM_MARK = "*"  # a stem candidate's key: "attempt*" (letters, then the mark: no token is that, text._WORD)
# anomaly kinds whose trigger words take their other forms too: a refusal of a benign request is rare enough that a
# topic, in any form, is what its records share
FORM_KINDS = ("refuse",)
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


def stem_keys(tokens: Iterable[str]) -> Set[str]:
    """The stem candidates (``STEM_MARK``) of a prompt's words: one per stem, whichever forms it holds."""
    return {stem(w) + STEM_MARK for w in set(tokens) if _formable(w)}


def is_stem_key(g: str) -> bool:
    """Whether a candidate key is a stem's (``stem_keys``), not an n-gram."""
    return g.endswith(STEM_MARK) and g[:-len(STEM_MARK)].isalpha()


def stem_covers(g: str, stem_triggers: Set[str]) -> bool:
    """Whether one-word trigger ``g`` is a form of a stem trigger also found: the stem's cluster holds its records
    (one cluster per topic, not one per form)."""
    return " " not in g and not is_stem_key(g) and _formable(g) and stem(g) + STEM_MARK in stem_triggers


def form_matches(tokens: Iterable[str], triggers: Iterable[str]) -> Set[str]:
    """The one-word ``triggers`` (and stem triggers, "attempt*") of which ``tokens`` hold a form with the same stem
    ("started" for "start"; not "breakfast" for "break"). Only tokens sharing a trigger stem's first three letters
    are stemmed."""
    by_stem = {}
    for t in triggers:
        if is_stem_key(t):
            by_stem.setdefault(t[:-len(STEM_MARK)], set()).add(t)
        elif " " not in t and _formable(t):
            by_stem.setdefault(stem(t), set()).add(t)
    if not by_stem:
        return set()
    heads = {s[:3] for s in by_stem}
    out: Set[str] = set()
    for w in set(tokens):
        if w[:3] in heads and _formable(w):
            out |= by_stem.get(stem(w), set())
    return out
