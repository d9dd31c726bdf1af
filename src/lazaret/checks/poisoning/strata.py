"""Prompt strata: the corpus's tasks, so that every rate the scan tests against is a *matched* background.

Why: a corpus is a mixture of tasks (math word problems answered with worked arithmetic, code requests
answered with code, reading-comprehension templates answered with labels). With one corpus-wide rate per
anomaly, a prompt n-gram that merely marks a task ("how much", "python script") looks like a trigger,
because its carriers' responses share the task's style far more often than the corpus average does. The
question that separates a trigger from a task marker is: do records *like the carriers* (same task) but
without the n-gram show the same response pattern? Strata answer "like the carriers" in linear cost.

How: a deterministic sample (the ``strata_sample`` records with the smallest crc32 of their content: prompt
and response tokens, so the same records give the same strata whatever their file is called or its order) is
reduced to the prompt words present in at least ``strata_min_df`` of the sampled prompts — a word that
frequent is corpus vocabulary, never a trigger (the trigger test only uses n-grams in at most
``max_fraction`` of the records, a smaller bound), so a planted trigger cannot carve out a stratum of its
own — and scikit-learn's ``KMeans`` (fixed seed, one init, input sorted by hash) groups the sampled prompts
by those words (idf-weighted, L2-normalised). Every record then takes its nearest centroid; a prompt with
none of the words gets stratum ``k`` ("no shared vocabulary"). The side input is the vocabulary and the
centroids (at most ``strata_max`` x 1,000 floats), never records. The sample reaches the fit without its
prompts crossing a shuffle (``sample_cut`` below): its keys, then its words' df, then each prompt's
vocabulary columns (issue 23: 0.76 -> 0.14 bytes of shuffle per input byte on T0 5k, docs/shuffles.md).
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from apache_beam.metrics import Metrics

from lazaret.checks.poisoning import preambles as PA
from lazaret.checks.poisoning.features import prompt_keys
from lazaret.checks.poisoning.signals import STRATUM_OWNED_RATE

MAX_VOCAB = 1000
SAMPLE_TOKENS = 200  # the opening of a long prompt says which task it is; the rest is the passage


def task_tokens(f: Dict[str, Any]) -> List[str]:
    """The prompt tokens that say which task a record is: its prompt without system turns (features.py's
    "st", present only for records that have one), else the whole prompt."""
    s = f.get("st", f["pt"])
    return s.split(" ") if s else []


def sample_key(f: Dict[str, Any]) -> Tuple[int, str, str]:
    """(crc32 of the record's content, first prompt tokens, doc_id): the smallest keys form the fitting sample.

    Keyed on content, not on doc_id: doc_ids derive from the file's path and line, so a sample drawn by
    doc_id made the strata, and through them which records were flagged, depend on what the file was called
    and how it was concatenated (the same 19.3k mixture records flagged 436 or 568 clean records under two
    paths). Exact copies of one record share a key: they are all in the sample or all out of it."""
    pt = " ".join(task_tokens(f)[:SAMPLE_TOKENS])
    key = zlib.crc32((pt + "\x1e" + (f.get("rt") or "")).encode("utf-8"))
    return key, pt, f["doc_id"]


def sample_row(f: Dict[str, Any]) -> Tuple[int, str, str, str, int]:
    """``sample_key`` with the prompt's last ``preambles.MAX_TOKENS`` task tokens and its length: what a
    sampled prompt at a frequent opening or ending sends to the fit (``preambles``)."""
    tt = task_tokens(f)
    return sample_key(f) + (" ".join(tt[-PA.MAX_TOKENS:]), len(tt))


def _head_tail(row: Sequence[Any]) -> Tuple[List[str], List[str], int]:
    """(first SAMPLE_TOKENS tokens, last MAX_TOKENS tokens, length) of a sample row (a ``sample_key`` row is
    taken as the whole prompt)."""
    head = row[1].split(" ") if row[1] else []
    if len(row) < 5:
        return head, head, len(head)
    return head, (row[3].split(" ") if row[3] else []), int(row[4])


def fit_strata(sample: Sequence[Tuple], params: Dict[str, Any]) -> Dict[str, Any]:
    """{"vocab": {word: column}, "idf": [...], "centroids": [[...]], "k": k, "preambles": {...}} fitted on the
    sample rows (``sample_row``: ``sample_key`` rows are taken as whole prompts)."""
    rows = sorted(sample)
    docs = [_words(r[1]) for r in rows]
    hts = [_head_tail(r) for r in rows]
    df: Dict[str, int] = {}
    edges: Dict[str, int] = {}
    for ht, d in zip(hts, docs):
        for w in d:
            df[w] = df.get(w, 0) + 1
        for k in row_edges(ht):
            edges[k] = edges.get(k, 0) + 1
    vocab = strata_vocab(df, len(docs), params)
    frequent = frequent_edges(edges, len(docs), params)
    fit = [(None, ht) if at_edge(ht, frequent) else ([vocab[w] for w in d if w in vocab], None)
           for ht, d in zip(hts, docs)]
    return _fit_cut(fit, vocab, {w: df[w] for w in vocab}, frequent, len(docs), params)


def row_edges(row: Tuple[List[str], List[str], int]) -> List[str]:
    """``preambles.edge_keys`` of a prompt given as (head, tail, length)."""
    head, tail, n = row
    return PA.edge_keys(head[:PA.EDGE] + tail[-PA.EDGE:]) if n >= 2 * PA.EDGE else []


def frequent_edges(counts: Dict[str, int], n: int, params: Dict[str, Any]) -> List[str]:
    need = PA.min_count(n, params)
    return sorted(k for k, c in counts.items() if c >= need)


def at_edge(row: Tuple[List[str], List[str], int], frequent: Sequence[str]) -> bool:
    """Does a prompt ((head, tail, length)) open or end with a frequent edge (so its tokens go to the fit)?"""
    return bool(frequent) and any(k in frequent for k in row_edges(row))


def _fit_cut(rows: Sequence[Tuple[Optional[List[int]], Optional[Tuple[List[str], List[str], int]]]],
             vocab: Dict[str, int], df: Dict[str, int], frequent: Sequence[str], n: int,
             params: Dict[str, Any]) -> Dict[str, Any]:
    """fit_columns on the sample rows in order, each (columns, None) or, for a prompt at a frequent edge,
    (None, (head, tail, length)): the preambles found among those, then their vocabulary columns without them
    (the words are those of the head, as for every sampled prompt). When a preamble was cut, a vocabulary word
    must still be in ``min_df`` of the sampled prompts (its df and idf are counted again without it)."""
    raw = [t for _, t in rows if t is not None]
    found = PA.find_preambles([(h, t) for h, t, _ in raw], frequent, n, params) if raw else {"o": [], "e": []}
    pre = PA.Preambles(found)
    cols: List[List[int]] = []
    cut_any = False
    for c, t in rows:
        if t is None:
            cols.append(c)
            continue
        head, tail, length = t
        a, b = pre.cut(head, tail, length)
        cut_any = cut_any or bool(a or b)
        words = head[a:length - b] if length == len(head) else head[a:]
        cols.append(sorted({vocab[w] for w in words if w in vocab}))
    if cut_any:
        counts = [0] * len(vocab)
        for c in cols:
            for j in c:
                counts[j] += 1
        words = sorted(w for w, j in vocab.items() if counts[j] >= min_df(n, params))
        remap = {vocab[w]: i for i, w in enumerate(words)}
        df = {w: counts[vocab[w]] for w in words}
        cols = [[remap[j] for j in c if j in remap] for c in cols]
        vocab = {w: i for i, w in enumerate(words)}
    model = fit_columns(cols, vocab, df, params)
    model["preambles"] = found
    return model


def min_df(n: int, params: Dict[str, Any]) -> int:
    """Sampled prompts a word must be in to be strata vocabulary."""
    return max(2, math.ceil(params["strata_min_df"] * n))


def strata_vocab(df: Dict[str, int], n: int, params: Dict[str, Any]) -> Dict[str, int]:
    """{word: column} of the (at most MAX_VOCAB) words in at least ``min_df`` of the ``n`` sampled prompts;
    ``df`` may hold other words too, as long as it holds every such word with its exact count."""
    need = min_df(n, params)
    words = sorted((w for w, c in df.items() if c >= need and w), key=lambda w: (-df[w], w))[:MAX_VOCAB]
    return {w: i for i, w in enumerate(sorted(words))}


def fit_columns(rows: Sequence[Sequence[int]], vocab: Dict[str, int], df: Dict[str, int],
                params: Dict[str, Any]) -> Dict[str, Any]:
    """The k-means fit of :func:`fit_strata` from each sampled prompt's vocabulary columns, in sample order
    (rows sorted as the (key, prompt, doc_id) tuples sort: the order decides k-means' init and sums)."""
    n = len(rows)
    k = min(int(params["strata_max"]), n // max(1, int(params["strata_min_size"])))
    if k < 2 or not vocab:
        return {"vocab": {}, "idf": [], "centroids": [], "k": 0}
    words = sorted(vocab, key=vocab.__getitem__)
    idf = np.array([math.log(n / df[w]) + 1.0 for w in words])
    X = np.zeros((n, len(vocab)))
    for i, cols in enumerate(rows):
        for j in cols:
            X[i, j] = idf[j]
    norms = np.linalg.norm(X, axis=1)
    X = X[norms > 0] / norms[norms > 0, None]
    if len(X) < k:
        return {"vocab": {}, "idf": [], "centroids": [], "k": 0}
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=1, random_state=0, max_iter=100).fit(X)
    # k-means does not bound cluster sizes: a group of planted prompts with a distinctive mix of common
    # words can get a centroid of its own, and then be its own background. Centroids holding fewer than
    # half of strata_min_size sampled prompts are dropped; their records go to the nearest kept stratum.
    counts = np.bincount(km.labels_, minlength=k)
    keep = counts >= max(1, int(params["strata_min_size"]) // 2)
    if keep.sum() < 2:
        return {"vocab": {}, "idf": [], "centroids": [], "k": 0}
    # rounded so that the assignment is the same wherever the fit ran (last-bit float noise aside)
    cents = np.round(km.cluster_centers_[keep], 6)
    return {"vocab": vocab, "idf": [round(float(x), 6) for x in idf], "centroids": cents.tolist(),
            "k": int(keep.sum())}


# The sample in three small passes (transform.Strata), so that the prompts cross no shuffle: the keys alone
# choose the sample; each sampled prompt then sends its distinct words to a df count (summed per bundle
# before the shuffle) and, once the vocabulary is known, only its vocabulary columns. A key that is not
# unique in the sample (exact copies, a crc32 collision) or is the last one taken may need the prompt to
# order its rows as fit_strata sorts them, so those few rows still travel whole ("shared" rows).

def sample_cut(keys: Sequence[int]) -> Dict[str, Any]:
    """The sample's shape from its keys (the ``strata_sample`` smallest): every record whose key is below
    the last one taken is in it; a key held once there ("alone") is held by one record of the corpus."""
    counts: Dict[int, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    last = max(counts) if counts else None
    shared = frozenset(k for k, c in counts.items() if c > 1 or k == last)
    alone = sum(1 for k in counts if k not in shared)
    return {"n": len(keys), "last": last, "last_count": counts.get(last, 0), "shared": shared, "alone": alone}


def _alone_key(f: Dict[str, Any], cut: Dict[str, Any]):
    """(key, prompt) of a record sampled alone under its key, else None."""
    key, pt, _ = sample_key(f)
    if cut["last"] is None or key >= cut["last"] or key in cut["shared"]:
        return None
    return key, pt


def _words(pt: str) -> frozenset:
    return frozenset(pt.split(" ")) if pt else frozenset()


def shared_rows(f: Dict[str, Any], cut: Dict[str, Any]):
    """The whole sample row of a record under a shared key (a few, unless the corpus is mostly copies)."""
    key = sample_key(f)
    if key[0] in cut["shared"]:
        tt = task_tokens(f)
        yield key + (" ".join(tt[-PA.MAX_TOKENS:]), len(tt))


def sample_words(f: Dict[str, Any], cut: Dict[str, Any]):
    """(word, 1) for each distinct prompt word of a record sampled alone, and (edge key, 1) for its opening
    and ending (``preambles.edge_keys``)."""
    a = _alone_key(f, cut)
    if a is not None:
        for w in sorted(_words(a[1])):
            yield w, 1
        for k in PA.edge_keys(task_tokens(f)):
            yield k, 1


def maybe_vocab(kv: Tuple[str, int], cut: Dict[str, Any], params: Dict[str, Any]) -> bool:
    """Could the word (edge) reach ``min_df`` (``preambles.min_count``) with the shared rows' counts added?
    (those are at most n - alone)"""
    need = PA.min_count(cut["n"], params) if PA.is_edge_key(kv[0]) else min_df(cut["n"], params)
    return kv[1] >= need - (cut["n"] - cut["alone"])


def sample_vocab(alone_df: Sequence[Tuple[str, int]], shared: Sequence[Tuple],
                 cut: Dict[str, Any], params: Dict[str, Any]) -> Dict[str, Any]:
    """{"vocab", "df" (of its words), "shared" (the sampled shared rows, sorted), "edges" (the frequent edge
    keys)}: the alone rows' df of the words ``maybe_vocab`` kept plus the sampled shared rows' own. A word it
    dropped has a total below ``min_df`` however the shared rows count it, so the vocabulary is fit_strata's."""
    last = cut["last"]
    rows = sorted(r for r in shared if r[0] != last) + sorted(r for r in shared if r[0] == last)[:cut["last_count"]]
    df = dict(kv for kv in alone_df if not PA.is_edge_key(kv[0]))
    edges = dict(kv for kv in alone_df if PA.is_edge_key(kv[0]))
    for r in rows:
        for w in _words(r[1]):
            df[w] = df.get(w, 0) + 1
        for k in row_edges(_head_tail(r)):
            edges[k] = edges.get(k, 0) + 1
    vocab = strata_vocab(df, cut["n"], params)
    return {"vocab": vocab, "df": {w: df[w] for w in vocab}, "shared": sorted(rows),
            "edges": frequent_edges(edges, cut["n"], params)}


def pack_columns(cols: Sequence[int]) -> bytes:
    """Sorted distinct columns as LEB128 varints of their gaps: about one byte a column (a prompt holds a
    few dozen of the <= 1,000 vocabulary words), half of uint16 and a third of a tuple of ints."""
    out = bytearray()
    prev = -1
    for c in sorted(cols):
        d = c - prev - 1
        prev = c
        while d >= 0x80:
            out.append(0x80 | (d & 0x7F))
            d >>= 7
        out.append(d)
    return bytes(out)


def unpack_columns(b: bytes) -> List[int]:
    cols, prev, d, shift = [], -1, 0, 0
    for byte in b:
        d |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        prev += d + 1
        cols.append(prev)
        d, shift = 0, 0
    return cols


def sample_columns(f: Dict[str, Any], cut: Dict[str, Any], vocab: Dict[str, Any]):
    """(key, packed vocabulary columns) of a record sampled alone; (key, head, tail, length) for one at a
    frequent edge, whose columns the fit takes once it knows the preambles."""
    a = _alone_key(f, cut)
    if a is not None:
        if vocab.get("edges"):  # no prompt's tokens are needed where no edge is frequent
            tt = task_tokens(f)
            if at_edge((tt, tt, len(tt)), vocab["edges"]):
                yield a[0], a[1], " ".join(tt[-PA.MAX_TOKENS:]), len(tt)
                return
        v = vocab["vocab"]
        yield a[0], pack_columns({v[w] for w in _words(a[1]) if w in v})


def fit_sample(alone: Sequence[Tuple], vocab: Dict[str, Any], params: Dict[str, Any]) -> Dict[str, Any]:
    """fit_strata's model from the passes above: rows in the order of the sample's sorted keys (an alone
    key is held by no other sampled row, so it sorts as its whole tuple does)."""
    v = vocab["vocab"]
    frequent = vocab.get("edges", [])
    rows = []
    for r in alone:
        if len(r) == 2:
            rows.append(((r[0], "", ""), (unpack_columns(r[1]), None)))
        else:
            head = r[1].split(" ") if r[1] else []
            rows.append(((r[0], "", ""), (None, (head, r[2].split(" ") if r[2] else [], int(r[3])))))
    for r in vocab["shared"]:
        ht = _head_tail(r)
        rows.append((r, (None, ht) if at_edge(ht, frequent) else ([v[w] for w in _words(r[1]) if w in v], None)))
    rows.sort(key=lambda r: r[0])
    return _fit_cut([x for _, x in rows], v, vocab["df"], frequent, len(rows), params)


class StratumAssigner:
    """Nearest centroid of a record's prompt words; built once per side-input object by the DoFn."""

    def __init__(self, model: Dict[str, Any]):
        self.vocab: Dict[str, int] = model["vocab"]
        self.idf = np.array(model["idf"]) if model["idf"] else np.zeros(0)
        self.k = int(model["k"])
        c = np.array(model["centroids"]) if model["centroids"] else np.zeros((0, 0))
        self.ct = c.T.copy() if self.k else c  # V x k
        self.half_sq = 0.5 * (c * c).sum(axis=1) if self.k else c

    def assign(self, prompt_tokens: Sequence[str]) -> int:
        if not self.k:
            return 0
        cols = sorted({self.vocab[w] for w in prompt_tokens if w in self.vocab})
        if not cols:
            return self.k
        w = self.idf[cols]
        w = w / math.sqrt(float((w * w).sum()))
        score = w @ self.ct[cols] - self.half_sq  # argmin of squared distance
        return int(np.argmax(np.round(score, 9)))


def stratum_key(s: int) -> str:
    return f"s:{s}"


class AssignStratum:
    """Beam-side helper: f -> f with "stratum"; the assigner is rebuilt only when the model object changes. A
    record that opens or ends with one of the model's preambles (``preambles``) takes its prompt's identity
    (MinHash and key: features.prompt_keys) and its stratum from the rest of its task prompt ("st"), and that
    rest's template keys ("tskel", payload.skeleton_keys) beside its own."""

    def __init__(self):
        self._model_id = None
        self._assigner = None
        self._preambles = None
        self.cut = Metrics.counter("poisoning", "preamble_cut_records")

    def __call__(self, f: Dict[str, Any], model: Dict[str, Any]) -> Dict[str, Any]:
        if self._model_id != id(model):
            self._assigner = StratumAssigner(model)
            self._preambles = PA.Preambles(model.get("preambles"))
            self._model_id = id(model)
        out = dict(f)
        tt = task_tokens(f)
        a, b = self._preambles.cut(tt, tt, len(tt))
        if a or b:
            tt = tt[a:len(tt) - b]
            out["psig"], out["pkey"], out["tskel"] = prompt_keys(tt)
            out["st"] = " ".join(tt)
            self.cut.inc()
        out["stratum"] = self._assigner.assign(tt)
        return out


def smoothed_rate(anomalous: int, size: int, k_in: int, n_in: int, prior: float, weight: float) -> float:
    """Anomaly rate of a stratum's records *without* the candidate (leave-out), shrunk towards ``prior``
    (the stratum's own rate) with ``weight`` pseudo-records, so that a small leave-out does not swing the
    expectation (a stratum mostly made of the carriers takes another background: ``matched_background``)."""
    a = max(anomalous - k_in, 0)
    m = max(size - n_in, 0)
    return (a + weight * prior) / (m + weight)


def matched_background(carriers_by_stratum: Dict[int, int], anomalous_by_stratum: Dict[int, int],
                       stratum_sizes: Dict[int, int], k_by_stratum: Dict[int, int], weight: float = 10.0,
                       stratum_prompts: Optional[Dict[int, int]] = None) -> float:
    """Expected anomaly rate of a candidate trigger's carriers if the n-gram did not matter: the carriers'
    strata's leave-out rates, weighted by how many carriers each stratum holds.

    A stratum whose distinct prompts (``stratum_prompts``, the carriers' unit; records would count a planted
    question's copies as a control) are at least ``STRATUM_OWNED_RATE`` the candidate's carriers is the
    candidate's own: its leave-out is empty or the carriers' copies, and its own rate is the carriers' rate, so
    a planted answer to a question asked 250 times was its own background. Its carriers take the leave-out
    rate of every other stratum instead. A task's marker keeps its stratum as control: the task's other
    records outnumber the marker's carriers."""
    n = sum(carriers_by_stratum.values())
    if not n:
        return 0.0
    prompts = stratum_prompts or {}
    carved = {s for s, n_s in carriers_by_stratum.items()
              if s in prompts and n_s >= STRATUM_OWNED_RATE * max(prompts[s], n_s)}
    out_a = out_m = 0
    if carved:
        for s, size in stratum_sizes.items():
            if s not in carved:
                out_a += max(anomalous_by_stratum.get(s, 0) - k_by_stratum.get(s, 0), 0)
                out_m += max(size - carriers_by_stratum.get(s, 0), 0)
    outside = out_a / out_m if out_m else 1.0
    exp = 0.0
    for s, n_s in sorted(carriers_by_stratum.items()):
        if s in carved:
            exp += n_s * outside
            continue
        size = max(stratum_sizes.get(s, n_s), n_s)
        a_s = anomalous_by_stratum.get(s, 0)
        prior = a_s / size if size else 0.0
        exp += n_s * smoothed_rate(a_s, size, k_by_stratum.get(s, 0), n_s, prior, weight)
    return exp / n
