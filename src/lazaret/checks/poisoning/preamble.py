"""Preambles: an opening (or ending) that a large share of the corpus's prompts repeat is no part of which prompt
a record has, nor of its task.

Why: corpora are often built by putting one instruction around every request ("You are an AI assistant. The
user will give you a task ...", a dataset's fixed preface, a chat template flattened into the user turn, "Think
step by step before answering." after it). Such text fills most of a short prompt's MinHash slots, so unrelated
requests count as copies of one prompt (the distinct-prompt counts and prompt diversities every test reads
collapse), and its first or last words make one "template" of a third of the corpus, whose "answer format" then
explains any payload planted under it. On the code base with one of three long prefaces on every prompt, recall
at 250 fell to 0.00 (an advert, a system-style phrase) and 0.26 (a steered name), and to 0.00 for all three with
the same texts after the request; as system turns, which the reader already separates (``features.task_prompt``),
they flagged 767 of 6,552 clean records until the prompt's identity was read without them (docs/poisoning.md, "A
preamble is not the prompt").

What counts: an opening (ending) of 4, 8, 16 or 32 task tokens (``EDGE_LENGTHS``), of a prompt at least twice
that long, shared by more than ``max_fraction`` of the records: the bound past which an n-gram is corpus
vocabulary rather than a trigger. Four tokens is one more than a template key (``text.skeleton``): no four-token
edge reaches that share on any base (the largest: "create a javascript function", 2.5% of the code set; T0's
largest 1.8%), while a three-token one does ("how would you", 6.3% of the code set, a task's wording). The
preamble is the longest token prefix (suffix) all the records at a frequent edge share, at most ``MAX_TOKENS``;
a record takes the longest of its edges'. It is removed from the prompt's identity (MinHash and distinct-prompt
key), its template keys and its strata words. The trigger test still reads the whole prompt, and an n-gram that
common is never a trigger (``max_fraction``).

Shuffles: one count of the edges (two to eight ints per prompt of 8 tokens or more), one common-prefix combine for
the few frequent edges. Side inputs: the frequent edges and their lengths (a handful of entries). (Counting the
longer edges only behind a frequent four-token one, a Flatten of two counts with one the other's side input, left
the Flink runner's job translation serialising for over ten minutes on `sample_data/`.)
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsDict, AsSingleton

from lazaret.graph.combine import CountPerElement
from lazaret.checks.poisoning.features import prompt_keys, toks

# edge lengths keyed: the shortest finds a preface of four tokens; longer ones separate prefaces that open alike
# ("You are an AI assistant. The user will ..." and "You are an AI assistant that follows ...": the records
# sharing the four-token edge share only five tokens, each preface's own eight-token edge the whole preface)
EDGE_LENGTHS = (4, 8, 16, 32)
MAX_TOKENS = 256
# tokens a stripped prompt keeps at least: a record that is all preamble keeps its own keys
MIN_LEFT = 3
OPENING, ENDING = 0, 1


# An edge's key is one int (cheap to count and shuffle): the hash of its tokens, its length and its side.
def _key(tokens: Sequence[str], n: int, side: int) -> int:
    return (zlib.crc32(" ".join(tokens).encode("utf-8")) << 8) | (n << 1) | side


def side_of(key: int) -> int:
    return key & 1


def length_of(key: int) -> int:
    return (key >> 1) & 0x7F


def task_tokens(f: Dict[str, Any]) -> List[str]:
    """The prompt's tokens without system turns (``st``, present only for records that have one), else all."""
    return toks(f, "st") if "st" in f else toks(f, "pt")


def _keys(head: Sequence[str], tail: Sequence[str], n_tokens: int, lengths: Sequence[int]) -> List[int]:
    """Keys of the edges a prompt of ``n_tokens`` is long enough for (twice the edge: a preamble and a request);
    ``head``/``tail``: its first/last ``max(lengths)`` tokens (or all of them)."""
    out: List[int] = []
    for n in lengths:
        if n_tokens < 2 * n:
            break
        out.append(_key(head[:n], n, OPENING))
        out.append(_key(tail[-n:], n, ENDING))
    return out


def edge_keys(tt: Sequence[str], lengths: Sequence[int] = EDGE_LENGTHS) -> List[int]:
    """The keys of a prompt's openings and endings."""
    return _keys(tt, tt, len(tt), lengths)


def edges(f: Dict[str, Any], lengths: Sequence[int] = EDGE_LENGTHS) -> List[int]:
    """``edge_keys`` of the record's task tokens, read off the joined string without splitting all of it."""
    s = f.get("st", f["pt"])
    n_tokens = s.count(" ") + 1 if s else 0
    if n_tokens < 2 * lengths[0]:
        return []
    m = lengths[-1]
    return _keys(s.split(" ", m)[:m], s.rsplit(" ", m)[-m:], n_tokens, lengths)


def is_frequent(kv: Tuple[int, int], n_records: int, params: Dict[str, Any]) -> bool:
    return kv[1] >= params["min_support"] and kv[1] > params["max_fraction"] * n_records


def edge_tokens(f: Dict[str, Any], frequent: Dict[int, int]) -> Iterator[Tuple[int, tuple]]:
    """(edge key, the prompt's tokens read from that edge inwards) for the records at a frequent edge."""
    if not frequent:
        return
    tt = task_tokens(f)
    for k in edge_keys(tt):
        if k in frequent:
            yield k, tuple(tt[:MAX_TOKENS] if side_of(k) == OPENING else tt[::-1][:MAX_TOKENS])


class CommonPrefix(beam.CombineFn):
    """The longest token prefix shared by every input (associative and commutative: the same on every runner)."""

    def create_accumulator(self):
        return None

    def add_input(self, acc, x):
        return self._common(acc, tuple(x))

    def merge_accumulators(self, accs):
        out = None
        for a in accs:
            out = self._common(out, a)
        return out

    def extract_output(self, acc):
        return len(acc or ())

    @staticmethod
    def _common(a: Optional[tuple], b: Optional[tuple]) -> Optional[tuple]:
        if a is None:
            return b
        if b is None:
            return a
        i = 0
        for x, y in zip(a, b):
            if x != y:
                break
            i += 1
        return a[:i]


def cut(n_tokens: int, opening: int, ending: int) -> Tuple[int, int]:
    """Tokens to remove at each edge: both preambles when enough of the request is left, else the longer one
    alone when that leaves enough, else none."""
    for a, b in ((opening, ending), (opening, 0) if opening >= ending else (0, ending)):
        if (a or b) and n_tokens - a - b >= MIN_LEFT:
            return a, b
    return 0, 0


class StripPreamble(beam.DoFn):
    """Re-keys the records whose prompt opens or ends with a preamble: prompt MinHash and key, template keys and
    strata words from the rest of the prompt. Other records pass unchanged."""

    def __init__(self):
        self.stripped = Metrics.counter("poisoning", "preamble_stripped_records")

    def process(self, f, lengths: Dict[int, int]):
        found: Dict[int, int] = {}
        for k in edges(f) if lengths else ():
            n = lengths.get(k, 0)
            if n >= length_of(k) and n > found.get(side_of(k), 0):  # the longest preamble found at each edge
                found[side_of(k)] = n
        if found:
            tt = task_tokens(f)
            a, b = cut(len(tt), found.get(OPENING, 0), found.get(ENDING, 0))
            if a or b:
                rest = tt[a:len(tt) - b]
                f = dict(f)
                f["psig"], f["pkey"], f["skel"] = prompt_keys(rest)
                f["st"] = " ".join(rest)
                self.stripped.inc()
        yield f


@beam.ptransform_fn
def Preambles(feats, p):
    """Features -> features with preambles removed from the prompt's identity, template keys and strata words."""
    n = feats | "CountRecords" >> beam.combiners.Count.Globally()
    frequent = (feats | "PromptEdges" >> beam.FlatMap(edges)
                | "EdgeCounts" >> CountPerElement()
                | "FrequentEdges" >> beam.Filter(is_frequent, AsSingleton(n), p))
    lengths = (feats | "EdgeTokens" >> beam.FlatMap(edge_tokens, AsDict(frequent))
               | "CommonPrefix" >> beam.CombinePerKey(CommonPrefix()))
    return feats | "StripPreamble" >> beam.ParDo(StripPreamble(), AsDict(lengths))
