"""MinHash signatures (datasketch 2.x affine32 scheme, computed a batch at a time) and LSH band keys.

Why not a per-document ``MinHash.update``/``bulk`` call: datasketch hashes every shingle with a Python-level
SHA1 call, which dominated the stage (~9.5M calls on the 55k-record T0 corpus). Here shingle hashes are
built with numpy for a whole batch (words by vectorised tabulation hashing, n-gram windows combined arithmetically)
and the datasketch 2.0 "affine32" permutations (its own ``a``/``b`` parameters for ``num_perm``/``seed``, the
MurmurHash3 fmix32 pre-mix, ``a*h+b mod 2^32``, column minimum) are applied to all shingles of the batch at
once. The result is bit-identical to ``MinHash.bulk(shingle_hashes, num_perm=..., seed=..., scheme="affine32",
hashfunc=identity)`` (asserted in tests/test_dedup.py), so signatures stay comparable with datasketch.

Band keys fold each band's ``rows`` values to one 64-bit hash, of which the low ``band_key_bytes`` bytes (5 to 8,
``band_key_bytes_for`` the input's size) are the key: 5-byte shuffle keys instead of tuples or 8 bytes.
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
        "band_key": "the low band_key_bytes bytes (5 to 8, from the input's size; 8: the whole value as signed "
                    "int64) of fmix64(sum(row_value * odd_multiplier_k) xor band salt)",
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


#: band key widths in bytes: the narrowest (what a scan of up to ~100k records uses) and the full hash
MIN_KEY_BYTES, MAX_KEY_BYTES = 5, 8
#: input bytes per record ``band_key_bytes_for`` assumes (T0 averages 1,270 bytes of JSONL a record)
KEY_RECORD_BYTES = 1024
#: expected colliding pairs of distinct band values (over all bands) ``band_key_bytes_for`` allows
KEY_COLLISIONS = 1 / 8


def band_key_bytes_for(n_bytes: int | None, bands: int) -> int:
    """The band key width in bytes for an input of ``n_bytes`` (``shards.input_bytes``): the narrowest of 5..8
    whose expected number of colliding pairs of distinct band values, ``bands * N^2 / 2^(8 w + 1)`` with
    ``N = n_bytes / KEY_RECORD_BYTES`` records, is at most ``KEY_COLLISIONS``; 8 (the whole hash) when the size
    is unknown (None), as ``shards.shards_for`` keeps the policy's shard count then.

    Why narrow: every node's ``bands`` keys cross two shuffles (the exact groups and the band shards), and 3
    bytes less a key was ~0.09 bytes of shuffle per input byte on all of T0 (docs/shuffles.md). Why the width
    follows the size: a collision puts two distinct band values in one bucket. That costs verification work
    (the pair is verified on full signatures, ``verify.py``, and dropped), and changes a result only if the
    merged bucket crosses ``max_bucket_size`` (its pairs are then capped, ``banding.bucket_pairs``) or the
    random pair it makes is a true near-duplicate that no band found; both need a collision first, which the
    width keeps rare: 5 bytes up to ~117 MB of input (T0, 70 MB: 0.03 expected colliding pairs), 6 up to
    ~1.9 GB, 7 up to ~30 GB. A corpus of shorter records has more records than assumed, so more collisions
    (N^2), still costing work before results. Same width on every runner: it is computed once, where the
    graph is built."""
    if n_bytes is None:
        return MAX_KEY_BYTES
    n = max(1.0, n_bytes / KEY_RECORD_BYTES)
    for width in range(MIN_KEY_BYTES, MAX_KEY_BYTES):
        if bands * n * n / 2.0 ** (8 * width + 1) <= KEY_COLLISIONS:
            return width
    return MAX_KEY_BYTES


def band_keys(sigs: np.ndarray, params: DedupParams) -> np.ndarray:
    """(n_docs, bands) int64 keys of ``params.band_key_bytes`` bytes (non-negative below 8): equal keys <=>
    (almost surely) equal band rows in the same band.

    The key is the low bytes of a 64-bit hash, so its shard (``key mod shards``, a power of two) is the
    hash's. Collisions of distinct bands are possible but rare (``band_key_bytes_for``); verification on full
    signatures removes any pair they create, so they cost work; a merged bucket can also cross
    ``max_bucket_size``, the one way a collision could change a result.
    """
    mult, salt = _band_constants(params)
    used = sigs[:, : params.bands * params.rows].astype(np.uint64).reshape(len(sigs), params.bands, params.rows)
    with np.errstate(over="ignore"):
        h = (used * mult[None, None, :]).sum(axis=2, dtype=np.uint64)
        h = _fmix(h ^ salt[None, :])
    if params.band_key_bytes < MAX_KEY_BYTES:
        h &= np.uint64((1 << (8 * params.band_key_bytes)) - 1)
    return h.view(np.int64)


def keys_to_bytes(keys: np.ndarray, width: int) -> np.ndarray:
    """int64 keys of ``width`` bytes (``band_keys``) as a (len, width) uint8 array: their low ``width``
    little-endian bytes, what crosses the shuffles."""
    le = np.ascontiguousarray(keys.reshape(-1), dtype="<i8").view(np.uint8).reshape(-1, 8)
    return le[:, :width]


def keys_from_bytes(data: np.ndarray | bytes, width: int) -> np.ndarray:
    """``keys_to_bytes``' bytes (``width`` a key) back to int64 keys."""
    raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    raw = raw.reshape(-1, width)
    if width == MAX_KEY_BYTES:
        return np.ascontiguousarray(raw).view("<i8").reshape(-1).astype(np.int64, copy=False)
    full = np.zeros((len(raw), 8), dtype=np.uint8)
    full[:, :width] = raw
    return full.view("<i8").reshape(-1).astype(np.int64, copy=False)


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
