"""MinHash signatures (datasketch 2.x affine32 scheme, computed a batch at a time) and LSH band keys.

Why not a per-document ``MinHash.update``/``bulk`` call: datasketch hashes every shingle with a Python-level
SHA1 call, which dominated the stage (~9.5M calls on the 55k-record T0 corpus). Here shingle hashes are
built with numpy for a whole batch (words by vectorised tabulation hashing, n-gram windows combined arithmetically)
and the datasketch 2.0 "affine32" permutations (its own ``a``/``b`` parameters for ``num_perm``/``seed``, the
MurmurHash3 fmix32 pre-mix, ``a*h+b mod 2^32``, column minimum) are applied to all shingles of the batch at
once. The result is bit-identical to ``MinHash.bulk(shingle_hashes, num_perm=..., seed=..., scheme="affine32",
hashfunc=identity)`` (asserted in tests/test_dedup.py), so signatures stay comparable with datasketch.

Band keys fold each band's ``rows`` values to one signed 64-bit int (8-byte shuffle keys instead of tuples).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

import numpy as np

from lazaret.checks.near_duplicate.params import DedupParams

SCHEME = "affine32"
SHINGLE_HASH = ("tabulation-64 per word (utf-8 bytes, 64x256 table from RandomState(20261127), fmix64); "
                "n-gram = fmix64(sum_k word_hash[i+k] * odd_k), low 32 bits")
SIG_DTYPE = np.dtype("<u4")
_CHUNK = 1 << 13  # shingles per permutation chunk: bounds memory at _CHUNK * num_perm * 4 bytes (4 MB)


def provenance_info(params: DedupParams | None = None) -> Dict[str, object]:
    """What makes signatures comparable across runs: record it in provenance.json."""
    from lazaret.checks.near_duplicate.normalise import NORMALISATION_VERSION

    info: Dict[str, object] = {
        "library": "datasketch",
        "datasketch_version": _datasketch_version(),
        "minhash_scheme": SCHEME,
        "minhash_equivalent_to": "datasketch.MinHash.bulk(shingle_hashes, scheme='affine32', hashfunc=identity)",
        "shingle_hash": SHINGLE_HASH,
        "shingles": "word n-grams of normalised text",
        "normalisation": NORMALISATION_VERSION,
        "band_key": "fmix64(sum(row_value * odd_multiplier_k) xor band salt), as signed int64",
        "representative": "smallest doc_id in the cluster",
    }
    if params is not None:
        info["params"] = params.as_dict()
    return info


def _datasketch_version() -> str:
    """The installed datasketch's version (what its ``__version__`` says), read without importing it."""
    from importlib import metadata

    try:
        return metadata.version("datasketch")
    except metadata.PackageNotFoundError:
        return "unknown"


_IMPORT_LOCK = threading.Lock()


def _minhash_class() -> type:
    """datasketch's ``MinHash`` class, from ``datasketch/minhash.py`` alone when datasketch is not imported yet.

    Why: the package's ``__init__`` imports every sketch it has, and its LSH modules import
    ``scipy.integrate`` (~0.35 CPU-s and ~20 MB per process on this machine, a tenth of a small scan's
    start-up); the check reads only MinHash's permutation parameters. The module is datasketch's own code,
    run under a bare stand-in for its package, and ``sys.modules`` is left as it was: a later ``import
    datasketch`` loads the package whole, as if this had not run."""
    with _IMPORT_LOCK:
        if "datasketch" in sys.modules:
            from datasketch import MinHash

            return MinHash
        spec = importlib.util.find_spec("datasketch")
        if spec is None or not spec.submodule_search_locations:
            from datasketch import MinHash  # not a package on disk: import it as usual

            return MinHash
        before = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] == "datasketch"}
        stand_in = types.ModuleType("datasketch")
        stand_in.__path__ = list(spec.submodule_search_locations)
        stand_in.__spec__ = spec
        sys.modules["datasketch"] = stand_in
        try:
            return importlib.import_module("datasketch.minhash").MinHash
        finally:
            for name in [n for n in sys.modules if n.split(".")[0] == "datasketch"]:
                if name not in before:
                    del sys.modules[name]
            sys.modules.update(before)


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """datasketch's own affine32 permutation parameters (a odd, b) for (num_perm, seed)."""
    a, b = _minhash_class()(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


# MurmurHash3's finalisers (fmix32, fmix64): (shift, multiplier, shift, multiplier, shift) per word size
_FMIX = {np.uint32: (16, 0x85EBCA6B, 13, 0xC2B2AE35, 16), np.uint64: (33, 0xFF51AFD7ED558CCD, 33, 0xC4CEB9FE1A85EC53, 33)}


def _fmix(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser for ``h``'s word size (uint32 or uint64), element-wise, wrapping."""
    word = h.dtype.type
    s1, m1, s2, m2, s3 = (word(v) for v in _FMIX[word])
    h = (h ^ (h >> s1)) * m1
    h = (h ^ (h >> s2)) * m2
    return h ^ (h >> s3)


@lru_cache(maxsize=8)
def _ngram_multipliers(n: int) -> np.ndarray:
    rng = np.random.RandomState(1_000_003 + n)
    return (rng.randint(0, 1 << 62, size=n, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)


# Tabulation hashing of words, vectorised over a chunk of texts: byte b at position p of a word picks entry
# [p mod 64][b] of _word_table(); a word's hash is the XOR of its bytes' entries (bytes past 64 rotated by p // 64),
# mixed with its length and finalised by fmix64. No per-word Python call and no cache: a per-worker word cache
# (the previous scheme) was the one piece of dedup state that grew with the corpus's vocabulary.
_WORD_POSITIONS = 64
_SPACE = 32


@lru_cache(maxsize=1)
def _word_table() -> np.ndarray:
    rng = np.random.RandomState(20261127)
    hi = rng.randint(0, 1 << 32, size=(_WORD_POSITIONS, 256), dtype=np.uint64)
    lo = rng.randint(0, 1 << 32, size=(_WORD_POSITIONS, 256), dtype=np.uint64)
    return ((hi << np.uint64(32)) | lo).ravel()


_WORD_CHUNK_CHARS = 1 << 18  # texts hashed together: ~40 bytes of numpy temporaries per character


def word_hashes(norms: Sequence[str]) -> np.ndarray:
    """64-bit hash of every word of the normalised texts, in order (texts: single spaces, none leading or
    trailing, as ``normalise`` makes them). Texts are hashed in chunks of ~256k characters, so the
    temporaries stay ~10 MB whatever the batch."""
    parts: List[np.ndarray] = []
    chunk: List[str] = []
    size = 0
    for norm in norms:
        if not norm:
            continue
        chunk.append(norm)
        size += len(norm) + 1
        if size >= _WORD_CHUNK_CHARS:
            parts.append(_word_hashes_joined(chunk))
            chunk, size = [], 0
    if chunk:
        parts.append(_word_hashes_joined(chunk))
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _word_hashes_joined(norms: Sequence[str]) -> np.ndarray:
    """Words as ``" ".join(norms).split(" ")`` would give them (an empty word where spaces double or end a
    text), hashed; ``norms`` are non-empty."""
    data = " ".join(norms).encode("utf-8", "surrogatepass")
    b = np.frombuffer(data, dtype=np.uint8)
    spaces = np.flatnonzero(b == _SPACE)
    starts = np.concatenate(([0], spaces + 1))
    lengths = np.concatenate((spaces, [len(b)])) - starts
    pos = np.arange(len(b), dtype=np.int64) - np.repeat(starts, lengths + 1)[: len(b)]
    v = _word_table()[(pos & (_WORD_POSITIONS - 1)) * 256 + b]
    with np.errstate(over="ignore"):
        far = pos >= _WORD_POSITIONS
        if far.any():
            s = (pos[far] // _WORD_POSITIONS % 63 + 1).astype(np.uint64)
            x = v[far]
            v[far] = (x << s) | (x >> (np.uint64(64) - s))
        v[b == _SPACE] = 0
        # one trailing zero: a text ending in a space makes an empty last word starting at len(b)
        h = np.bitwise_xor.reduceat(np.append(v, np.uint64(0)), starts)
        return _fmix(h ^ (lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)))


def shingle_hashes(norms: Sequence[str], n: int) -> Tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every word n-gram of each normalised text, concatenated; and per-doc counts.

    A text with fewer than ``n`` words contributes no shingles (callers keep those records exact-only).
    """
    lengths = np.fromiter((n_.count(" ") + 1 if n_ else 0 for n_ in norms), dtype=np.int64, count=len(norms))
    counts = np.maximum(lengths - n + 1, 0)
    total = int(lengths.sum())
    if total < n or not counts.any():
        return np.zeros(0, dtype=np.uint32), counts
    tok = word_hashes(norms)
    mult = _ngram_multipliers(n)
    width = total - n + 1
    with np.errstate(over="ignore"):
        acc = tok[:width] * mult[0]
        for k in range(1, n):
            acc += tok[k:k + width] * mult[k]
        h = _fmix(acc)
    # keep windows that lie inside one document
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    keep = np.zeros(width, dtype=bool)
    for s, c in zip(starts.tolist(), counts.tolist()):
        if c:
            keep[s:s + c] = True
    return (h[keep] & np.uint64(0xFFFFFFFF)).astype(np.uint32), counts


def minhash_from_hashes(hashes: np.ndarray, counts: np.ndarray, params: DedupParams) -> np.ndarray:
    """(n_docs, num_perm) affine32 MinHash values from concatenated 32-bit shingle hashes.

    Works in chunks of ``_CHUNK`` shingles so memory stays bounded for any document length. The permuted
    values are laid out one permutation per row (num_perm x chunk), so each document's minimum is one
    ``np.minimum.reduceat`` along contiguous memory for the whole chunk: a Python-level loop over the
    documents of a chunk (two numpy calls each, a strided column minimum) cost 2.5x as much on T0.
    """
    a, b = _permutations(params.num_perm, params.seed)
    n_docs = len(counts)
    sigs = np.full((params.num_perm, n_docs), np.iinfo(np.uint32).max, dtype=np.uint32)
    total = len(hashes)
    if total == 0:
        return np.ascontiguousarray(sigs.T, dtype=SIG_DTYPE)
    counts = np.asarray(counts, dtype=np.int64)
    offs = np.concatenate(([0], np.cumsum(counts)))
    doc_of = np.repeat(np.arange(n_docs), counts)  # the document of every shingle
    col_a, col_b = a[:, None], b[:, None]
    with np.errstate(over="ignore"):
        mixed = _fmix(hashes.astype(np.uint32))
        buf = np.empty((params.num_perm, min(_CHUNK, total)), dtype=np.uint32)
        for lo in range(0, total, _CHUNK):
            hi = min(lo + _CHUNK, total)
            phv = buf[:, :hi - lo]
            np.multiply(col_a, mixed[None, lo:hi], out=phv)
            np.add(phv, col_b, out=phv)
            # the documents with shingles in [lo, hi), and where each starts inside the chunk
            first, last = int(doc_of[lo]), int(doc_of[hi - 1])
            docs = np.arange(first, last + 1)[counts[first:last + 1] > 0]
            starts = np.maximum(offs[docs], lo) - lo
            mins = np.minimum.reduceat(phv, starts, axis=1)
            sigs[:, docs] = np.minimum(sigs[:, docs], mins)
    return np.ascontiguousarray(sigs.T, dtype=SIG_DTYPE)


def signatures(norms: Sequence[str], params: DedupParams) -> np.ndarray:
    """One row of ``num_perm`` uint32 MinHash values per normalised text."""
    hashes, counts = shingle_hashes(norms, params.ngram)
    return minhash_from_hashes(hashes, counts, params)


def _band_constants(params: DedupParams):
    rng = np.random.RandomState(params.seed + 7919)
    mult = (rng.randint(0, 1 << 62, size=params.rows, dtype=np.uint64) << np.uint64(1)) | np.uint64(1)
    salt = rng.randint(0, 1 << 62, size=params.bands, dtype=np.uint64)
    return mult, salt


def band_keys(sigs: np.ndarray, params: DedupParams) -> np.ndarray:
    """(n_docs, bands) int64 keys: equal keys <=> (almost surely) equal band rows in the same band.

    Collisions of distinct bands are possible but rare (64-bit); verification on full signatures removes
    any pair they create, so they cost work, never correctness.
    """
    mult, salt = _band_constants(params)
    used = sigs[:, : params.bands * params.rows].astype(np.uint64).reshape(len(sigs), params.bands, params.rows)
    with np.errstate(over="ignore"):
        h = (used * mult[None, None, :]).sum(axis=2, dtype=np.uint64)
        h = _fmix(h ^ salt[None, :])
    return h.view(np.int64)


def sig_to_bytes(sig: np.ndarray) -> bytes:
    return np.ascontiguousarray(sig, dtype=SIG_DTYPE).tobytes()


def sig_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=SIG_DTYPE)


def estimate_jaccard(a: bytes, b: bytes) -> float:
    """Fraction of equal MinHash values: the unbiased Jaccard estimate (same as MinHash.jaccard)."""
    sa, sb = sig_from_bytes(a), sig_from_bytes(b)
    if len(sa) != len(sb):
        raise ValueError("signatures of different num_perm cannot be compared")
    return float(np.count_nonzero(sa == sb)) / float(len(sa))


def node_values(hashes: np.ndarray, counts: np.ndarray, sigs: np.ndarray,
                params: DedupParams) -> List[Tuple[bytes, bytes, int]]:
    """Per document: (signature bytes or b"", sorted distinct shingle hashes or b"", distinct shingle count).

    m = ``max_exact_shingles``, t = ``threshold``. Up to t*m shingles only the set travels (exact Jaccard);
    between t*m and m both (a partner may be above m); above m only the signature (MinHash estimate). A
    set-only record and a signature-only record cannot reach t (Jaccard <= smaller/larger size < t), so
    every pair that can reach the threshold has a comparable pair of values. Carrying only what can be used
    keeps the verification joins about half as big on instruction data.
    """
    m, t = params.max_exact_shingles, params.threshold
    uniq, ucounts = distinct_per_doc(hashes, counts)
    offs = np.concatenate(([0], np.cumsum(ucounts))).tolist()
    data = uniq.tobytes()
    size = SIG_DTYPE.itemsize
    out: List[Tuple[bytes, bytes, int]] = []
    for i, n in enumerate(ucounts.tolist()):
        set_b = data[offs[i] * size:offs[i + 1] * size] if 0 < n <= m else b""
        sig_b = sig_to_bytes(sigs[i]) if (n > t * m or not set_b) else b""
        out.append((sig_b, set_b, n))
    return out


def shingle_sets(norms: Sequence[str], n: int) -> List[bytes]:
    """Per normalised text: its sorted distinct shingle hashes as bytes, the set ``node_values`` makes (without
    the ``max_exact_shingles`` cut, which the caller applies). Why: node records travel with their normalised
    text instead of this set (verify.py), and the set is rebuilt where pairs are verified."""
    hashes, counts = shingle_hashes(norms, n)
    uniq, ucounts = distinct_per_doc(hashes, counts)
    offs = np.concatenate(([0], np.cumsum(ucounts))).tolist()
    data = uniq.tobytes()
    size = SIG_DTYPE.itemsize
    return [data[offs[i] * size:offs[i + 1] * size] for i in range(len(norms))]


def distinct_per_doc(hashes: np.ndarray, counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Sorted distinct shingle hashes of every document, concatenated, and their per-document counts.

    One sort of (document index << 32 | hash) for the whole batch instead of one ``np.unique`` per document:
    the per-call overhead, not the sorting, was the cost.
    """
    doc = np.repeat(np.arange(len(counts), dtype=np.uint64), counts)
    keyed = (doc << np.uint64(32)) | hashes.astype(np.uint64)
    keyed.sort()
    if len(keyed):
        keyed = keyed[np.r_[True, keyed[1:] != keyed[:-1]]]
    per_doc = np.bincount((keyed >> np.uint64(32)).astype(np.int64), minlength=len(counts))
    return (keyed & np.uint64(0xFFFFFFFF)).astype(SIG_DTYPE), per_doc


def similarity(a: Sequence, b: Sequence) -> Tuple[float, bool]:
    """(Jaccard, exact?) of two node values (signature, shingle set, distinct shingle count, ...).

    Exact Jaccard on the shingle sets when both travel (records up to ``max_exact_shingles`` shingles, nearly
    all instruction data), else the MinHash estimate from the full signatures. Why: near the threshold the
    estimate's standard error (~0.035 at J=0.8 with 128 permutations) turns into wrong drops on templated
    corpora, where many pairs sit just below the threshold. When neither form is shared (see node_values) the
    size bound smaller/larger, which is below the threshold, is returned.
    """
    sa, sb = a[1], b[1]
    if sa and sb:
        both = np.concatenate((sig_from_bytes(sa), sig_from_bytes(sb)))
        both.sort()
        inter = int(np.count_nonzero(both[1:] == both[:-1]))  # each side is a set: equal neighbours = shared
        return inter / float(len(both) - inter), True
    if a[0] and b[0]:
        return estimate_jaccard(a[0], b[0]), False
    na, nb = a[2], b[2]
    return (min(na, nb) / max(na, nb) if max(na, nb) else 0.0), False
