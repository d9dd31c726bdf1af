"""Preambles: an opening (or ending) that a large share of the corpus's prompts repeat is no part of *which*
prompt a record has, nor of which task it is.

Why: corpora are often built by putting one instruction around every request ("You are an AI assistant. The
user will give you a task ...", the Stanford Alpaca template, "Think step by step." after the request). Such
text fills most slots of a short prompt's MinHash, so unrelated requests count as copies of one prompt (the
distinct-prompt counts and prompt diversities every test reads collapse), and its words dominate the strata's
idf vectors, so the strata sort records by preface instead of by task (docs/poisoning.md, "A preamble is not
the prompt"). The prompt's template keys (``skel``) are left whole: a task's own template holding a large share
of a few-task corpus is its background, and a preface that is a random slice of the corpus explains nothing
there either (``payload.template_confined`` weighs a template by how much more of a candidate's carriers it
holds than of the corpus).

What counts: a prompt opening (ending) of at least ``EDGE`` tokens, of a prompt at least twice that long, shared
by more than ``max_fraction`` of the strata sample (the bound past which an n-gram is corpus vocabulary, never a
trigger); the preamble of a record is the longest such opening it has, at most ``MAX_TOKENS``. Found on the
strata sample (strata.py) in the passes that fit the strata, so it costs no pass over the corpus: the first
counts each sampled prompt's ``EDGE``-token opening and ending with its words, the second sends the tokens of
the sampled prompts at a frequent edge (none in a corpus without one) to the fit, which finds the preambles.
The model carries them to every record (``Preambles.cut``).
"""

from __future__ import annotations

import zlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

EDGE = 4  # one more token than a template key (text.skeleton): a three-token opening is a task's wording
MAX_TOKENS = 128
MIN_LEFT = 3  # tokens of request a cut leaves at least; a record that is all preamble keeps its own keys
# df keys of the edges: a token never holds a space, so they never meet a word
OPEN_KEY, END_KEY = " o ", " e "


def edge_keys(tt: Sequence[str]) -> List[str]:
    """The df keys of a prompt's opening and ending (none under twice ``EDGE`` tokens)."""
    if len(tt) < 2 * EDGE:
        return []
    return [OPEN_KEY + " ".join(tt[:EDGE]), END_KEY + " ".join(tt[-EDGE:])]


def is_edge_key(key: str) -> bool:
    return key.startswith(" ")


def min_count(n: int, params: Dict) -> int:
    """Sampled prompts an edge must open (end) to be a preamble: more than ``max_fraction`` of the sample."""
    return max(2, int(params["max_fraction"] * n) + 1)


def _prefix_hashes(s: Sequence[str]) -> List[int]:
    """crc32 of each prefix of ``s`` (chained: linear in its length), from length 1 to ``MAX_TOKENS``."""
    out, h = [], 0
    for tok in s[:MAX_TOKENS]:
        h = zlib.crc32((tok + " ").encode("utf-8"), h)
        out.append(h)
    return out


def _longest(seqs: Sequence[Sequence[str]], need: int) -> List[str]:
    """The longest prefix of each sequence shared by at least ``need`` of them (``EDGE`` tokens or more; those
    that have one), as sorted distinct strings."""
    hashes = [_prefix_hashes(s) for s in seqs]
    counts: Dict[Tuple[int, int], int] = {}
    for hs in hashes:
        for n in range(EDGE, len(hs) + 1):
            counts[(n, hs[n - 1])] = counts.get((n, hs[n - 1]), 0) + 1
    out = set()
    for s, hs in zip(seqs, hashes):
        for n in range(len(hs), EDGE - 1, -1):
            if counts[(n, hs[n - 1])] >= need:
                out.add(" ".join(s[:n]))
                break
    return sorted(out)


def find_preambles(rows: Sequence[Tuple[Sequence[str], Sequence[str]]], frequent: Iterable[str], n: int,
                   params: Dict) -> Dict[str, List[str]]:
    """{"o": openings, "e": endings} from the (head tokens, tail tokens) of the sampled prompts, given the
    frequent edge keys (``edge_keys`` counted over the whole sample): exact, since every prompt sharing a
    longer opening shares its ``EDGE``-token one and so is in ``rows``."""
    frequent = set(frequent)
    need = min_count(n, params)
    heads = [list(h) for h, t in rows if len(h) >= 2 * EDGE and OPEN_KEY + " ".join(h[:EDGE]) in frequent]
    tails = [list(reversed(t)) for h, t in rows if len(t) >= 2 * EDGE and
             END_KEY + " ".join(t[-EDGE:]) in frequent]
    ends = [" ".join(reversed(s.split(" "))) for s in _longest(tails, need)]
    return {"o": _longest(heads, need), "e": sorted(ends)}


class Preambles:
    """The preambles of a model, matched against a record's task tokens."""

    def __init__(self, found: Optional[Dict[str, List[str]]]):
        found = found or {}
        self.sides = []
        for side in ("o", "e"):
            strings = found.get(side) or []
            by_edge: Dict[str, List[int]] = {}
            for s in strings:
                tt = s.split(" ")
                edge = tt[:EDGE] if side == "o" else tt[-EDGE:]
                by_edge.setdefault(" ".join(edge), []).append(len(tt))
            self.sides.append((side, set(strings), {k: sorted(set(v), reverse=True) for k, v in by_edge.items()}))
        self.any = any(s[1] for s in self.sides)

    def _match(self, tt: Sequence[str], side: str, strings, by_edge) -> int:
        edge = tt[:EDGE] if side == "o" else tt[-EDGE:]
        for n in by_edge.get(" ".join(edge), ()):
            if n <= len(tt) and " ".join(tt[:n] if side == "o" else tt[-n:]) in strings:
                return n
        return 0

    def cut(self, head: Sequence[str], tail: Sequence[str], n: int) -> Tuple[int, int]:
        """Tokens to remove at the opening and at the end of a prompt of ``n`` tokens (``head``/``tail``: its
        first/last ``MAX_TOKENS`` or more): both preambles when at least ``MIN_LEFT`` tokens of request are
        left, else the longer alone when that leaves enough, else none."""
        if not self.any or n < 2 * EDGE:
            return 0, 0
        (_, so, bo), (_, se, be) = self.sides
        a, b = self._match(head, "o", so, bo), self._match(tail, "e", se, be)
        for x, y in ((a, b), (a, 0) if a >= b else (0, b)):
            if (x or y) and n - x - y >= MIN_LEFT:
                return x, y
        return 0, 0
