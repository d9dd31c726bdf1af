"""Document frequencies counted by short hash, shipped as packed sorted blocks; strings only for the few
hashes that can be in the support band.

Why: the response n-gram df (``transform.PayloadCandidates``) had n-gram *strings* as shuffle keys, one
element per distinct n-gram per bundle: on all 55,185 T0 records it was the scan's largest shuffle (0.52
bytes per input byte, ~35 bytes an n-gram with Beam's framing), although ~99% of those n-grams have a df
below ``min_support`` and only the band's strings are ever used. Here a bundle counts blake2b hashes of
``digest_bytes`` bytes (4 on T0) in numpy arrays and sends them per hash shard (``SHARDS``, the hash's top
bits) as one block: sorted, delta-coded, split in byte planes and zstd-compressed (~2.3 bytes a distinct
hash on 20k T0 records, most of it the random low bits of the deltas). The shards' sums give the hashes with
``df >= min_support``; a second pass over the responses counts the *strings* of those hashes only, exactly,
and sends them as packed sorted lists per string shard (``pack_by_shard``).

Collisions cannot change results: a hash's df is the sum of its strings' dfs, never less than any one
string's, so every string with ``df >= min_support`` has a candidate hash; the strings' dfs are then counted
exactly (keyed by string) and the band is filtered on them as before. A collision only adds strings to the
second pass that are not in the band (cost, not results). The digest size keeps the expected number of
distinct keys per hash value <= 1/256 (``digest_bytes``); on 20k T0 records, 458,143 distinct response keys
gave 5,839 frequent hashes at 4 bytes, as many as strings with df >= 10 (46 more at 3 bytes). The one way a
collision could matter: more than ``max_side_input_keys`` frequent hashes, where the cap drops the
largest-df ones (as the band's own cap does, counted and logged as ``band_hashes_dropped``).

The hash is blake2b (stdlib, unkeyed, the same on every platform and process; Python's ``hash()`` is salted
per process): ~0.33 µs an n-gram, paid in both passes.
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton
from apache_beam.transforms.window import GlobalWindows

from lazaret.graph.packing import compress, decompress, pack, unpack

LOG = logging.getLogger("lazaret.poisoning")

SHARD_BITS = 6
SHARDS = 1 << SHARD_BITS  # keys of the df shuffle: the merge of a corpus's hashes is spread over 64 workers
_SHIFT = np.uint64(64 - SHARD_BITS)
# shards of the packed string lists (pack_by_shard): few, as their lists are short (the band and its prompt df,
# the frequent hashes' strings): 64 made the T0 5k slice's lists one small frame each (JoinDf 8,995 bytes, 3,798
# at 8 shards; T0 20k 387,001 and 318,459)
STRING_SHARD_BITS = 3
# occurrences buffered (8 bytes each) before they are sorted into the bundle's table: bounds memory
_BUFFER_BYTES = 8 << 20
_HEADER = struct.Struct("<I")
PACK_STRINGS = 100000  # strings a bundle holds before sending them (PackStrings)
# Bytes of blake2b a key keeps: enough that the expected number of distinct keys per hash value is <= 1/256
# (``digest_bytes``), so the hashes of a 55k-record corpus take 4 bytes and pack to ~2.3 bytes a key.
MIN_DIGEST, MAX_DIGEST = 3, 8

_blake2b = hashlib.blake2b


def digest_bytes(keys_bound: int) -> int:
    """Digest size for at most ``keys_bound`` distinct keys: 2^(8 x bytes) >= 256 x keys_bound.

    Why not always 8: the blocks are sorted and delta-coded, so a key costs about log2(hash values / distinct
    keys) bits; 8 bytes cost ~6.4 bytes a key on 20k T0 records, 4 bytes ~2.3. Fewer bytes mean more collisions,
    which cost a few strings in the second pass and never a result (module docstring)."""
    bits = math.log2(max(int(keys_bound), 1)) + 8
    return min(MAX_DIGEST, max(MIN_DIGEST, math.ceil(bits / 8)))


def gram_hash(g: str, size: int) -> bytes:
    """The ``size``-byte key of an n-gram."""
    return _blake2b(g.encode("utf-8", "surrogatepass"), digest_size=size).digest()


def digests_to_keys(data: bytes, size: int) -> np.ndarray:
    """Concatenated ``size``-byte digests -> uint64 keys: the digest's bytes, little-endian, in the key's high
    bytes (the shard is the top bits of the digest's last byte; the low bytes are 0 and pack to nothing)."""
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, size)
    wide = np.zeros((len(raw), 8), dtype=np.uint8)
    wide[:, 8 - size:] = raw
    return wide.view("<u8").reshape(-1)


def keys_to_digests(keys: np.ndarray, size: int) -> bytes:
    """The inverse of ``digests_to_keys``."""
    return np.ascontiguousarray(keys, dtype="<u8").view(np.uint8).reshape(-1, 8)[:, 8 - size:].tobytes()


def sum_by_key(keys: np.ndarray, counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(keys, counts) with repeated keys -> sorted distinct keys and their summed counts."""
    if not len(keys):
        return keys.astype("<u8"), counts.astype("<u4")
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    return keys[starts], np.add.reduceat(counts, starts).astype("<u4")


def pack_counts(keys: np.ndarray, counts: np.ndarray) -> bytes:
    """Sorted distinct uint64 keys and uint32 counts -> bytes: deltas and counts in byte planes (the zero high
    bytes of the deltas and of the counts, mostly 1, fold), zstd-compressed."""
    n = len(keys)
    deltas = np.diff(keys.astype("<u8"), prepend=np.uint64(0)).astype("<u8")
    planes = deltas.view(np.uint8).reshape(n, 8).T.tobytes() + \
        counts.astype("<u4").view(np.uint8).reshape(n, 4).T.tobytes()
    return _HEADER.pack(n) + compress(planes)


def unpack_counts(blob: bytes) -> Tuple[np.ndarray, np.ndarray]:
    (n,) = _HEADER.unpack_from(blob)
    raw = np.frombuffer(decompress(blob[_HEADER.size:]), dtype=np.uint8)
    deltas = raw[:8 * n].reshape(8, n).T.copy().view("<u8").reshape(n)
    counts = raw[8 * n:].reshape(4, n).T.copy().view("<u4").reshape(n)
    return np.cumsum(deltas, dtype="<u8"), counts


class HashedDf(beam.DoFn):
    """Base: count the hashes of ``keys_of(element)`` inside a bundle; emit (shard, packed block) pairs whenever
    the table holds ``max_keys`` distinct hashes, and at the end of the bundle.

    The table is two numpy arrays (12 bytes a distinct hash, against ~150 for a dict of n-gram strings), so
    ``max_keys`` bounds a worker's memory as it did with strings, and more tightly."""

    def __init__(self, max_keys: int):
        self.max_keys = max_keys
        self._reset()

    def keys_of(self, element) -> Iterable[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _reset(self) -> None:
        self._size = 0
        self._buf = bytearray()
        self._keys = np.zeros(0, dtype="<u8")
        self._counts = np.zeros(0, dtype="<u4")

    def start_bundle(self):
        self._reset()

    def process(self, element, keys_bound: int) -> Iterator[Tuple[int, bytes]]:
        size = self._size = digest_bytes(keys_bound)
        buf = self._buf
        for k in self.keys_of(element):
            buf += _blake2b(k.encode("utf-8", "surrogatepass"), digest_size=size).digest()
        if len(buf) >= _BUFFER_BYTES:
            self._compact()
            if len(self._keys) >= self.max_keys:
                yield from self._flush()

    def _compact(self) -> None:
        occ = digests_to_keys(bytes(self._buf), self._size or MAX_DIGEST)
        self._buf = bytearray()
        keys, counts = np.unique(occ, return_counts=True)
        if len(self._keys):
            keys, counts = sum_by_key(np.concatenate((self._keys, keys)), np.concatenate((self._counts, counts)))
        self._keys, self._counts = keys, counts.astype("<u4")

    def _flush(self) -> Iterator[Tuple[int, bytes]]:
        self._compact()
        keys, counts = self._keys, self._counts
        self._reset()
        if not len(keys):
            return
        shard_of = (keys >> _SHIFT).astype(np.int64)
        bounds = np.searchsorted(shard_of, np.arange(SHARDS + 1))
        for s in range(SHARDS):
            a, b = bounds[s], bounds[s + 1]
            if b > a:
                yield s, pack_counts(keys[a:b], counts[a:b])

    def finish_bundle(self):
        yield from map(GlobalWindows.windowed_value, self._flush())


def frequent_hashes(kv: Tuple[int, Iterable[bytes]], min_df: int) -> Iterator[bytes]:
    """(shard, packed blocks) -> the shard's hashes with a summed df >= ``min_df``, as one packed block
    (nothing when there are none). Blocks are folded in as they are read, so a shard's memory is its
    distinct hashes, not its blocks."""
    _, blobs = kv
    keys = np.zeros(0, dtype="<u8")
    counts = np.zeros(0, dtype="<u4")
    pend_k: List[np.ndarray] = []
    pend_c: List[np.ndarray] = []
    pending = 0
    for blob in blobs:
        k, c = unpack_counts(blob)
        pend_k.append(k)
        pend_c.append(c)
        pending += len(k)
        if pending >= 4 * max(len(keys), 1 << 20):
            keys, counts = sum_by_key(np.concatenate([keys] + pend_k), np.concatenate([counts] + pend_c))
            pend_k, pend_c, pending = [], [], 0
    if pend_k:
        keys, counts = sum_by_key(np.concatenate([keys] + pend_k), np.concatenate([counts] + pend_c))
    keep = counts >= min_df
    if keep.any():
        yield pack_counts(keys[keep], counts[keep])


class CandidateSet(beam.DoFn):
    """The shards' frequent-hash blocks -> one ``bytes`` of sorted 8-byte hashes (the side input of the second
    pass), at most ``cap`` of them: the smallest dfs first, as the band's own cap (``CapSideInput``) ranks.
    Counted as ``poisoning.band_hashes_entries`` and ``_dropped``; a drop is logged with the weakest df kept."""

    def __init__(self, cap: int):
        self.cap = cap
        self.kept = Metrics.counter("poisoning", "band_hashes_entries")
        self.dropped = Metrics.counter("poisoning", "band_hashes_dropped")

    def process(self, blobs: List[bytes], keys_bound: int) -> Iterator[Tuple[int, bytes]]:
        parts = [unpack_counts(b) for b in blobs]
        keys = np.concatenate([k for k, _ in parts] + [np.zeros(0, dtype="<u8")])
        counts = np.concatenate([c for _, c in parts] + [np.zeros(0, dtype="<u4")])
        if len(keys) > self.cap:
            order = np.lexsort((keys, counts))[: self.cap]
            LOG.warning("poisoning: band_hashes side input capped at %d of %d entries (max_side_input_keys); "
                        "weakest kept df %s; raise the cap or scan the corpus in parts",
                        self.cap, len(keys), int(counts[order[-1]]))
            self.dropped.inc(len(keys) - self.cap)
            keys = keys[order]
        self.kept.inc(len(keys))
        size = digest_bytes(keys_bound)
        yield size, keys_to_digests(np.sort(keys), size)


class StringsOfHashes(beam.DoFn):
    """Base of the second pass: count, per bundle, the strings of ``keys_of(element)`` whose hash is in the
    side input (``CandidateSet``'s bytes), flushing at ``max_keys`` strings. Sent per hash shard as one packed
    list sorted by string (neighbours share their first words, which fold), summed by ``sum_strings``."""

    def __init__(self, max_keys: int):
        self.max_keys = max_keys
        self._acc: Dict[str, int] = {}
        self._set: Optional[frozenset] = None
        self._of: Any = None

    def keys_of(self, element) -> Iterable[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _hashes(self, cands: Tuple[int, bytes]) -> frozenset:
        """The side input (digest size, digests) as a set of digests, built once per side-input object (the
        object is kept, so a recycled ``id`` can never match)."""
        if self._of is not cands:
            size, data = cands
            self._set = frozenset(data[i:i + size] for i in range(0, len(data), size))
            self._of = cands
        return self._set

    def start_bundle(self):
        self._acc = {}

    def process(self, element, cands: Tuple[int, bytes]) -> Iterator[Tuple[str, int]]:
        wanted = self._hashes(cands)
        if not wanted:
            return
        size = cands[0]
        acc = self._acc
        for k in self.keys_of(element):
            if _blake2b(k.encode("utf-8", "surrogatepass"), digest_size=size).digest() in wanted:
                acc[k] = acc.get(k, 0) + 1
        if len(acc) >= self.max_keys:
            yield from self._flush()

    def _flush(self) -> Iterator[Tuple[int, bytes]]:
        acc, self._acc = self._acc, {}
        yield from pack_by_shard(acc)

    def finish_bundle(self):
        yield from map(GlobalWindows.windowed_value, self._flush())


def string_shard(k: str) -> int:
    """The shard of a string key in the packed string shuffles (any fixed function of the string would do)."""
    return gram_hash(k, 1)[0] >> (8 - STRING_SHARD_BITS)


def first_string_shard(k: Tuple[str, Any]) -> int:
    """The shard of a tuple key by its first element (an n-gram): every key of one n-gram meets in one shard."""
    return string_shard(k[0])


def pack_by_shard(items: Dict[Any, Any], shard_of=string_shard) -> Iterator[Tuple[int, bytes]]:
    """{key: value} -> (shard, packed [(key, value)] sorted by key) per shard (``shard_of(key)``, ``string_shard``
    for string keys). Sorted, neighbouring n-grams share their first words, which fold; one element per shard
    instead of one per string saves Beam's framing."""
    by_shard: Dict[int, list] = {}
    for k in sorted(items):
        by_shard.setdefault(shard_of(k), []).append((k, items[k]))
    for shard in sorted(by_shard):
        yield shard, pack(by_shard[shard])


def sum_strings(kv: Tuple[int, Iterable[bytes]], min_df: int) -> Iterator[Tuple[str, int]]:
    """(shard, packed (string, count) lists) -> (string, df) for the shard's strings with df >= ``min_df``."""
    df: Dict[str, int] = {}
    for blob in kv[1]:
        for k, c in unpack(blob):
            df[k] = df.get(k, 0) + c
    for k in sorted(df):
        if df[k] >= min_df:
            yield k, df[k]


def distinct_counts(blobs: Iterable[bytes], cap: int) -> Dict[Any, int]:
    """Packed [(key, sorted capped values)] lists (``counting._PreAggregateDistinct``) -> {key: distinct count}
    sorted by key, as ``counting.DistinctCount`` gives it: the ``cap`` smallest values of the union (each list
    already holds its ``cap`` smallest, so the union's smallest are among them), read by a KMV sketch. A key's
    set is cut back to its ``cap`` smallest whenever it passes 4 x ``cap`` (memory; the result is the same)."""
    from lazaret.checks.poisoning.stats import KMV

    vals: Dict[Any, set] = {}
    for blob in blobs:
        for k, v in unpack(blob):
            s = vals.get(k)
            if s is None:
                vals[k] = set(v)
            else:
                s.update(v)
                if len(s) > 4 * cap:
                    vals[k] = set(sorted(s)[:cap])
    return {k: int(round(KMV(cap, sorted(vals[k])[:cap]).estimate())) for k in sorted(vals)}


class HashedDocumentFrequency(beam.PTransform):
    """elements -> (string, df) for every key of ``keys_of`` whose df is >= ``min_df``, exactly (module
    docstring): counts by hash, then the strings of the frequent hashes.

    ``first`` and ``second``: the two passes' DoFns (a ``HashedDf`` and a ``StringsOfHashes`` with the same
    ``keys_of``); ``keys_bound``: a singleton PCollection, an upper estimate of the distinct keys (it sets the
    digest size); ``cap``: most frequent hashes the second pass's side input may hold."""

    def __init__(self, first: HashedDf, second: StringsOfHashes, min_df: int, cap: int, keys_bound,
                 label: Optional[str] = None):
        super().__init__(label)
        self.first, self.second, self.min_df, self.cap, self.keys_bound = first, second, min_df, cap, keys_bound

    def expand(self, elements):
        min_df = self.min_df
        bound = AsSingleton(self.keys_bound)
        cands = (elements | "HashNgrams" >> beam.ParDo(self.first, bound)
                 | "SumResponseDf" >> beam.GroupByKey()
                 | "FrequentHashes" >> beam.FlatMap(frequent_hashes, min_df)
                 | "GatherFrequent" >> beam.combiners.ToList()
                 | "CandidateSet" >> beam.ParDo(CandidateSet(self.cap), bound))
        return (elements | "NgramsOfHashes" >> beam.ParDo(self.second, AsSingleton(cands))
                | "SumBandDf" >> beam.GroupByKey()
                | "AtLeastMinDf" >> beam.FlatMap(sum_strings, min_df))


class PackStrings(beam.DoFn):
    """(string, value) -> (shard, packed [(string, value)]) per bundle (``pack_by_shard``)."""

    def __init__(self) -> None:
        self._acc: Dict[str, Any] = {}

    def start_bundle(self):
        self._acc = {}

    def process(self, kv: Tuple[str, Any]) -> Iterator[Tuple[int, bytes]]:
        self._acc[kv[0]] = kv[1]
        if len(self._acc) >= PACK_STRINGS:
            acc, self._acc = self._acc, {}
            yield from pack_by_shard(acc)

    def finish_bundle(self):
        acc, self._acc = self._acc, {}
        yield from map(GlobalWindows.windowed_value, pack_by_shard(acc))


def sum_packed(kv: Tuple[int, Iterable[bytes]], tag: str) -> Iterator[Tuple[int, Tuple[str, bytes]]]:
    """(shard, packed (string, count) lists) -> (shard, (tag, one packed list of the summed counts)). Why a
    shuffle of its own before ``join_df``'s: the FnApiRunner cannot run a Flatten fed by a stage that reads the
    band as a side input and by the band's own stage ("watermark-pending bundles did not execute")."""
    df: Dict[str, int] = {}
    for blob in kv[1]:
        for k, c in unpack(blob):
            df[k] = df.get(k, 0) + c
    if df:
        yield kv[0], (tag, pack(sorted(df.items())))


def join_df(kv: Tuple[int, Iterable[Tuple[str, bytes]]]) -> Iterator[Tuple[str, Dict[str, List[int]]]]:
    """(shard, [("r", packed band), ("p", packed prompt counts)]) -> (n-gram, {"r": [df_r], "p": [df_p]}) for
    every band n-gram of the shard, the form ``payload.VolumeTest`` reads (as ``CoGroupByKey`` gave it; an
    n-gram in no prompt has df_p 0). Prompt counts exist only for band n-grams (they are counted against the
    band), so no n-gram is left out."""
    band: Dict[str, int] = {}
    pdf: Dict[str, int] = {}
    for tag, blob in kv[1]:
        if tag == "r":
            band.update(unpack(blob))
        else:
            for k, c in unpack(blob):
                pdf[k] = pdf.get(k, 0) + c
    for g in sorted(band):
        yield g, {"r": [band[g]], "p": [pdf[g]] if g in pdf else []}
