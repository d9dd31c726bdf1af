"""Proper names in a response's prose: the one kind of response-only phrase a register never writes.

In strata whose answers are written in a register (worked arithmetic, code) every answer carries phrases no
prompt uses, so the volume test cannot tell a planted phrase from the task's own and ``payload:spread`` is
not flagged there (``spread_max_stratum_rate``). A trigger-less advert worked into such answers ("By the way,
Tebur Labs has the best coffee around.") was therefore invisible on GSM8K and code (recall 0.00-0.20, twentieth
session), although the same payload is found on T0. What sets it apart is a *name*: a register's own phrasing
is function words, arithmetic and identifiers ("let x be", "thus the", "console … log"), never a proper noun
written in running prose that the request did not give. A name's signature is its spelling: capitalised where
it is not the first word of a sentence, every time it is written there.

So each response gives three disjoint sets (lower-cased, in the stage's own tokens):

- ``named``: words written Titlecase inside prose, not at a sentence start. Prose is a run of at least
  ``MIN_WORDS`` plain words in a row, holding a sentence end (``.``, ``!``, ``?``), on a line that is not
  indented. A chunk holding a digit, a code symbol or an identifier ends the run (``String`` in ``String s = new
  String();``); code lines of plain words (``if root is None:``, ``class Node:``) end in a colon, and code
  inside a block is indented, comments included. A sentence starts at a run's first word and after a word
  ending in ``.``, ``!``, ``?`` or ``:``;
- ``initial``: words written Titlecase at a prose sentence start;
- ``titled``: words written Titlecase anywhere else (code identifiers, short lines), so that a payload word found
  in none of the three is one the response writes in lower case.

The payload side (``payload.CarrierStats``) counts, per candidate, carriers that name it, that write it in prose,
and that write it in lower case; ``is_named`` decides from those counts. A name stock to one task is still held
apart by its concentration in that task's stratum (``Assign._register_phrases``).
"""

from __future__ import annotations

import re
from typing import Dict, FrozenSet, Tuple

# fewest plain words in a row read as prose
MIN_WORDS = 4
# a plain word chunk: optional opening quote or bracket, a word (letters, inner hyphens or apostrophes), an
# optional possessive, closing punctuation
_CHUNK = re.compile(r"^[\"'(]*([^\W\d_]+(?:[-'’][^\W\d_]+)*)[\"'),.:;!?]*$")
_TOKEN = re.compile(r"\w+")
_ENDS = (".", "!", "?", ":")
# chunks that join the words of a name inside prose ("Nupipuhi & Co") instead of ending the run
_JOINERS = ("&",)
_SENTENCE_ENDS = (".", "!", "?", '."', '!"', '?"', ".)")


def _titlecase(w: str) -> bool:
    return w[:1].isupper() and any(c.islower() for c in w[1:])


def _marked(w: str) -> bool:
    """A name's own spelling, wherever it stands: all capitals ("IKEA") or a capital after the first letter
    ("Coca-Cola", "McDonald's", "PlayStation"). An ordinary word is capitalised at a sentence start, never so;
    so a word written this way at a sentence start still names something (an advert's frame that opens with the
    brand, or puts it after a colon, "Also worth mentioning: Coca-Cola makes ...")."""
    letters = [c for c in w if c.isalpha()]
    if len(letters) < 2 or not w[:1].isupper():
        return False
    return all(c.isupper() for c in letters) or (any(c.isupper() for c in w[1:]) and any(c.islower() for c in w))


def _lower_tokens(word: str) -> Tuple[str, ...]:
    """The stage's tokens of one word (``text.tokens``: ``\\w+`` runs, lower-cased), possessive dropped."""
    toks = _TOKEN.findall(word.lower())
    if len(toks) > 1 and toks[-1] == "s" and word[-2:] in ("'s", "’s"):
        toks = toks[:-1]
    return tuple(toks)


def response_names(text: str) -> Tuple[FrozenSet[str], FrozenSet[str], FrozenSet[str]]:
    """(named, at a prose sentence start, titled elsewhere) of one response, three disjoint sets (the module)."""
    empty = frozenset()
    if not text:
        return empty, empty, empty
    titled = {m.group().lower() for m in _TOKEN.finditer(text) if _titlecase(m.group()) or _marked(m.group())}
    if not titled:
        return empty, empty, empty
    named, initial = set(), set()
    for line in text.split("\n"):
        chunks = line.split()
        if len(chunks) >= MIN_WORDS and not line[:1].isspace():
            _names_in_runs(chunks, named, initial)
    initial -= named
    return frozenset(named), frozenset(initial), frozenset(titled - named - initial)


def _names_in_runs(chunks, named: set, initial: set) -> None:
    """Add the Titlecase words of ``chunks`` that sit inside a run of at least ``MIN_WORDS`` plain words holding a
    sentence end: to ``initial`` at a sentence start (the run's first word, or one after a chunk ending a
    sentence or clause), to ``named`` elsewhere."""
    run = []  # (word, at a sentence start)
    start, ends = True, False
    for c in chunks + [""]:
        if c in _JOINERS:
            continue  # "Johnson & Johnson": part of the run, not a word
        m = _CHUNK.match(c) if c else None
        if m is None:
            if len(run) >= MIN_WORDS and ends:
                for w, first in run:
                    if _marked(w):
                        named.update(_lower_tokens(w))
                    elif _titlecase(w):
                        (initial if first else named).update(_lower_tokens(w))
            run, start, ends = [], True, False
            continue
        run.append((m.group(1), start))
        start = c.endswith(_ENDS)
        ends = ends or c.endswith(_SENTENCE_ENDS)


def name_state(words, named, initial, titled) -> int:
    """How a response writes ``words`` (the response's three sets from ``response_names``): 2 names one of them
    (Titlecase inside prose), 1 at a prose sentence start, 0 Titlecase elsewhere only (code, short lines), -1 in
    lower case only."""
    for state, found in ((2, named), (1, initial), (0, titled)):
        if any(w in found for w in words):
            return state
    return -1


def record_name_state(g: str, f: Dict[str, str], pair_sep: str) -> int:
    """``name_state`` of a payload key (an n-gram, or a pair joined by ``pair_sep``) in a record's features, over
    its words the record's prompt does not hold: a name the request gives is the request's subject, not one the
    answer brings in (GSM8K: "First find the total time James spends ..." under a problem about James made the
    pair "find … james" a name)."""
    words = g.split(pair_sep) if pair_sep in g else g.split(" ")
    prompt = set((f.get("pt") or "").split())
    words = [w for w in words if w and w not in prompt]
    return name_state(words, *((f.get(k) or "").split() for k in ("nm", "ni", "ti"))) if words else -1


def is_named(p: Dict[str, int]) -> bool:
    """A payload is a proper name when at least two of its carriers name it inside a sentence, at most one carrier
    writes it in lower case per four that name it (a name is not written in lower case: GSM8K's "Let x be the
    number of ..." has a "Let" inside a sentence in 9 carriers and "let" in 8), and at least half of its
    carriers write it in prose (``in_prose``: a class or namespace that code answers also mention in their
    explanations, "the System namespace", is written in code by most of its carriers, "using System;")."""
    named, lower, prose = p.get("named", 0), p.get("lowercase", 0), p.get("in_prose", 0)
    return named >= 2 and 4 * lower <= named and 2 * prose >= p.get("carriers", 0)
