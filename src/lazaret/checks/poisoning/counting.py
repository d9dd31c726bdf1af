"""Document-frequency counting of word n-grams with bounded memory.

Each record contributes each distinct n-gram once (document frequency, not term frequency). Counts are
pre-aggregated inside a bundle (a dict flushed whenever it holds ``max_keys`` n-grams, so worker memory is
bounded) and summed by ``CombinePerKey`` across workers: the corpus is never collected in one place.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from lazaret.checks.poisoning import text as T
from lazaret.checks.poisoning.features import toks
from lazaret.checks.poisoning.hashed_df import HashedDf, StringsOfHashes, first_string_shard, pack_by_shard
from lazaret.checks.poisoning.word_forms import is_stem_key, stem_keys


def ngrams_in(toks: Sequence[str], lookup, first_tokens: Set[str], n_max: int) -> Set[str]:
    """The n-grams of ``toks`` that are keys of ``lookup``, enumerating only n-grams whose first token can
    start one (much cheaper than building every n-gram of a long prompt)."""
    out: Set[str] = set()
    L = len(toks)
    for i, t in enumerate(toks):
        if t not in first_tokens:
            continue
        g = t
        if g in lookup:
            out.add(g)
        for n in range(2, n_max + 1):
            j = i + n
            if j > L:
                break
            g = g + " " + toks[j - 1]
            if g in lookup:
                out.add(g)
    return out


def hit_places(toks: Sequence[str], lookup, first_tokens: Set[str], n_max: int, keep,
               gap: int = 0) -> List[Set[str]]:
    """The separate places of ``toks`` covered by n-grams of ``lookup`` that ``keep(g)`` accepts, each as the
    set of n-grams found there: overlapping or touching hits merge into one place (a planted sentence is one
    place however many of its n-grams are candidates).

    The n-grams come from ``ngrams_in`` (the scan's hot loop, kept free of positions); only the few kept ones
    are then found again in ``toks``, for the anomalous records this runs on. ``gap``: hits at most this many
    words apart are one place too (one planted line whose words between are not candidates)."""
    kept = [g for g in ngrams_in(toks, lookup, first_tokens, n_max) if keep(g)]
    if not kept:
        return []
    starts: Dict[str, List[int]] = {}
    for i, t in enumerate(toks):
        starts.setdefault(t, []).append(i)
    spans = []
    for g in kept:
        words = g.split(" ")
        n = len(words)
        spans += [(i, i + n, g) for i in starts[words[0]] if n == 1 or list(toks[i:i + n]) == words]
    places: List[Set[str]] = []
    reach = -1
    for i, j, g in sorted(spans):
        if not places or i > reach + gap:
            places.append(set())
        places[-1].add(g)
        reach = max(reach, j)
    return places


def keys_in(toks: Sequence[str], lookup, first_tokens: Set[str], n_max: int, pair_window: int = 0) -> Set[str]:
    """The keys of ``lookup`` that ``toks`` carry: n-grams (see ``ngrams_in``) and, with ``pair_window``,
    co-occurrence pairs (``text.pairs``)."""
    found = ngrams_in(toks, lookup, first_tokens, n_max)
    if pair_window:
        found |= T.pairs(toks, pair_window, lookup, getattr(first_tokens, "pair_words", None))
    return found


class _PreAggregate(beam.DoFn):
    """Base: sum (key, int) pairs inside a bundle, flushing when the dict grows past ``max_keys``."""

    def __init__(self, max_keys: int):
        self.max_keys = max_keys
        self._acc: Dict[Any, int] = {}

    def keys_of(self, element) -> Iterable[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start_bundle(self):
        self._acc = {}

    def process(self, element) -> Iterator[Tuple[Any, int]]:
        acc = self._acc
        for k in self.keys_of(element):
            acc[k] = acc.get(k, 0) + 1
        if len(acc) >= self.max_keys:
            self._acc = {}
            yield from acc.items()

    def finish_bundle(self):
        acc, self._acc = self._acc, {}
        yield from map(GlobalWindows.windowed_value, acc.items())


def response_keys(f, n_max: int, pair_window: int) -> Iterable[str]:
    """The response-side keys a record's response counts once for: its n-grams and co-occurrence pairs."""
    if f["gib"]:
        return ()  # random tokens: their own anomaly; as n-grams they would only add noise
    rt = toks(f, "rt")
    grams = T.ngrams(rt, n_max)
    if pair_window:
        grams = grams | T.pairs(rt, pair_window)
    return grams


class _ResponseKeys:
    """Both passes over the response keys (``response_keys``) take the same parameters and keys."""

    def __init__(self, n_max: int, max_keys: int, pair_window: int = 0):
        super().__init__(max_keys)
        self.n_max = n_max
        self.pair_window = pair_window

    def keys_of(self, f):
        return response_keys(f, self.n_max, self.pair_window)


class ResponseNgramDf(_ResponseKeys, HashedDf):
    """df of every response-side n-gram (responses are short: this is the cheap side), counted by hash
    (hashed_df.py: only the band's strings are ever needed)."""


class ResponseNgramsOfHashes(_ResponseKeys, StringsOfHashes):
    """The second pass of ``ResponseNgramDf``: exact df of the response n-grams whose hash is frequent."""


class _SideInputNgrams:
    """For DoFns that look up the keys of a side-input set: the set's first words are indexed once
    per side-input object (not per element), so looking n-grams up stays cheap."""

    _first: Optional[Set[str]] = None
    _lookup_id: Optional[int] = None

    def _first_of(self, lookup) -> Set[str]:
        """``first_tokens(lookup)``, rebuilt only when the side-input object changes."""
        if self._lookup_id != id(lookup):
            self._first = first_tokens(lookup)
            self._lookup_id = id(lookup)
        return self._first

    _stem_heads: Set[str] = set()
    _stems_id: Optional[int] = None

    def _stem_heads_of(self, lookup) -> Set[str]:
        """The first three letters of the set's stem keys (``word_forms.is_stem_key``), per side-input object."""
        if self._stems_id != id(lookup):
            self._stem_heads = {g[:3] for g in lookup if is_stem_key(g)}
            self._stems_id = id(lookup)
        return self._stem_heads

    def _bind(self, lookup) -> None:
        self._cur = (lookup, self._first_of(lookup))


class _CountsInSideInput(_SideInputNgrams):
    """For pre-aggregating DoFns (``_PreAggregate``, ``_PreAggregateDistinct``) whose keys are looked up in a
    side-input set: bind the set (indexed once per set object), then count as the base class does."""

    def process(self, f, lookup):  # type: ignore[override]
        self._bind(lookup)
        yield from super().process(f)


class PromptNgramDfIn(_CountsInSideInput, _PreAggregate):
    """df on the prompt side of the n-grams (and co-occurrence pairs) in a side-input set only (candidates
    found elsewhere)."""

    def __init__(self, n_max: int, max_keys: int, pair_window: int = 0):
        super().__init__(max_keys)
        self.n_max = n_max
        self.pair_window = pair_window

    def keys_of(self, f):
        lookup, first = self._cur
        if not lookup:
            return ()
        return keys_in(toks(f, "pt"), lookup, first, self.n_max, self.pair_window)


class PromptNgramDfInPacked(PromptNgramDfIn):
    """``PromptNgramDfIn`` whose counts leave the bundle as packed sorted lists per string shard
    (``hashed_df.pack_by_shard``): one element per shard, not one per n-gram."""

    def process(self, f, lookup):  # type: ignore[override]
        flushed = dict(super().process(f, lookup))
        if flushed:
            yield from pack_by_shard(flushed)

    def finish_bundle(self):
        acc, self._acc = self._acc, {}
        yield from map(GlobalWindows.windowed_value, pack_by_shard(acc))


class FirstWords(frozenset):
    """The words that can start a key of a lookup (n-grams: their first word; pairs: the whole key), plus
    ``pair_words``, the words of its pair keys, so pair lookups skip words no pair holds. Built once per
    side-input object by the DoFn that reads it, never kept in module state."""

    pair_words: FrozenSet[str]


def first_tokens(keys: Iterable[str]) -> FirstWords:
    keys = list(keys)
    out = FirstWords(k.split(" ", 1)[0] for k in keys)
    out.pair_words = T.pair_words(keys)
    return out


def trigger_lookup(ts: List[Dict[str, Any]], cache: Optional[Dict[int, Tuple[Any, Dict[str, Any], FrozenSet[str]]]]
                   ) -> Tuple[Dict[str, Any], FrozenSet[str]]:
    """(trigger -> trigger dict, first tokens) for a side input's trigger list, built once per list.

    Why: building them per record made the assignment cost records x triggers, and the trigger list grows
    with the corpus (4 near-copies of 20k T0 records: 9.3x the CPU of 1x). ``cache`` belongs to the
    calling DoFn instance and keeps the list itself, so a recycled ``id`` can never match.
    """
    entry = cache.get(id(ts)) if cache is not None else None
    if entry is not None and entry[0] is ts:
        return entry[1], entry[2]
    lookup = {t["trigger"]: t for t in ts}
    first = first_tokens(lookup)
    if cache is not None:
        if len(cache) >= 64:  # side inputs seen by this DoFn instance: a handful; never let it grow
            cache.clear()
        cache[id(ts)] = (ts, lookup, first)
    return lookup, first


class _PreAggregateDistinct(beam.DoFn):
    """Like _PreAggregate but collects the distinct values (prompt keys) per key, capped at ``cap`` smallest
    (a KMV sketch: the distinct count is exact below ``cap`` and estimated above). Keys are tuples whose first
    element is an n-gram; they leave the bundle as packed sorted lists per shard of that n-gram
    (``hashed_df.pack_by_shard``), one element per shard instead of one per key, and ``hashed_df.distinct_counts``
    merges a shard's lists as ``DistinctCount`` merged the per-key accumulators."""

    def __init__(self, max_keys: int, cap: int = 256):
        self.max_keys = max_keys
        self.cap = cap
        self._acc: Dict[Any, set] = {}

    def items_of(self, element) -> Iterable[Tuple[Any, int]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def start_bundle(self):
        self._acc = {}

    def _flush(self):
        acc, self._acc = self._acc, {}
        if acc:
            yield from pack_by_shard({k: sorted(vals)[: self.cap] for k, vals in acc.items()}, first_string_shard)

    def process(self, element):
        acc = self._acc
        for k, v in self.items_of(element):
            s = acc.get(k)
            if s is None:
                acc[k] = {v}
            elif len(s) < 4 * self.cap:
                s.add(v)
            else:
                s.add(v)
                acc[k] = set(sorted(s)[: self.cap])
        if len(acc) >= self.max_keys:
            yield from self._flush()

    def finish_bundle(self):
        yield from map(GlobalWindows.windowed_value, self._flush())


class DistinctCount(beam.CombineFn):
    """Merge capped sorted value lists; output the (estimated) number of distinct values."""

    def __init__(self, cap: int = 256):
        self.cap = cap

    def create_accumulator(self):
        return []

    def add_input(self, acc, vals):
        return sorted(set(acc).union(vals))[: self.cap]

    def merge_accumulators(self, accs):
        out: set = set()
        for a in accs:
            out.update(a)
        return sorted(out)[: self.cap]

    def extract_output(self, acc):
        from lazaret.checks.poisoning.stats import KMV

        return int(round(KMV(self.cap, acc).estimate()))


class DistinctPrompts(beam.CombineFn):
    """Distinct 32-bit prompt keys per key (a stratum): exact below ``cap``, a KMV estimate above. The set is
    trimmed to its ``cap`` smallest whenever it doubles, so memory is bounded whatever the stratum's size."""

    def __init__(self, cap: int = 1 << 14):
        self.cap = cap

    def create_accumulator(self):
        return set()

    def _trim(self, acc: set) -> set:
        return set(sorted(acc)[: self.cap]) if len(acc) > 2 * self.cap else acc

    def add_input(self, acc, v):
        acc.add(v)
        return self._trim(acc)

    def merge_accumulators(self, accs):
        out: set = set()
        for a in accs:
            out |= a
            out = self._trim(out)
        return out

    def extract_output(self, acc):
        from lazaret.checks.poisoning.stats import KMV

        return int(round(KMV(self.cap, acc).estimate()))


class PromptNgramDistinctIn(_CountsInSideInput, _PreAggregateDistinct):
    """Distinct prompts (near-duplicates collapsed) containing each n-gram of a side-input set, per prompt
    stratum (key (n-gram, stratum))."""

    def __init__(self, n_max: int, max_keys: int, cap: int = 256):
        super().__init__(max_keys, cap)
        self.n_max = n_max

    def items_of(self, f):
        lookup, first = self._cur
        if not lookup:
            return ()
        st = f.get("stratum", 0)
        pt = toks(f, "pt")
        found = ngrams_in(pt, lookup, first, self.n_max)
        heads = self._stem_heads_of(lookup)
        if heads:  # stem candidates (word_forms.stem_keys): stem only the words that could have one of them
            found |= {g for g in stem_keys(w for w in pt if w[:3] in heads) if g in lookup}
        return [((g, st), f["pkey"]) for g in found]
