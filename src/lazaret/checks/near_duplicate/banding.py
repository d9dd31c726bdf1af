"""LSH banding as a shuffle: band keys batched into shards, candidate pairs per bucket with a size cap.

Why shards: one shuffle element per (band, bucket) made the band shuffle the biggest cost of the stage (21
elements per document, each paying the runner's per-element overhead). Instead each signature batch packs
its (band_key, doc_id) entries into one numpy blob per shard (``band_key mod band_shards``); the shard
reducer sorts its entries by key and walks the runs of equal keys, which are exactly the LSH buckets.
Memory per shard is ``entries * 24 bytes`` with ``entries ~ docs * bands / band_shards``: raise
``band_shards`` for corpora beyond ~100M records.

Entries are 24 bytes (8-byte key, the doc_id as its 16 raw bytes; 21 with 5-byte keys, see below) when every
doc_id of the blob is 32 lowercase hex digits, which is what ``lazaret scan`` makes
(``graph.records.make_doc_id``); raw bytes sort as their hex does, so buckets, anchors and pairs are the same.
Other doc_ids (up to 32 ASCII characters) travel as before, 40-byte entries (37); a shard that receives
both kinds reads them all as text. Why: the band shuffle carries ``bands`` entries per document, 0.91 bytes
per input byte on the T0 5k slice with 40-byte entries.

Keys travel as their low ``band_key_bytes`` bytes (``signatures.band_keys``: 5 on inputs up to ~117 MB, 8
when the size is unknown), the width in the blob's second byte; in memory they are int64 again. The shard is
``key mod band_shards`` of the narrow key, which for a power-of-two shard count is that of the full hash.

Bucket cap: a bucket with m members would give m(m-1)/2 pairs. Up to ``max_bucket_size`` members we emit
all of them (verification keeps the true ones). Beyond that, every member is paired only with the bucket's
``bucket_anchors`` smallest doc_ids: O(m * anchors) pairs (the anchor scheme NeMo Curator also uses). A member
similar only to non-anchor members can then be missed by this bucket (other bands usually still find it).
Such pairs carry ``degraded=True`` so the cluster detail says so, and ``dedup/oversize_buckets`` counts it.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from lazaret.checks.near_duplicate.shards import (Block, ShardBuffer, hex_ids_raw, pack_pairs, raw_ids_hex,
                                                  shard_of)
from lazaret.checks.near_duplicate.signatures import keys_from_bytes, keys_to_bytes
from lazaret.checks.near_duplicate.verify import PAIR

ENTRY = np.dtype([("k", "<i8"), ("d", "S32")])  # doc_ids as text (tags b"t", b"T"), in memory
ENTRY_RAW = np.dtype([("k", "<i8"), ("d", "S16")])  # 32-hex-digit doc_ids as 16 raw bytes (tags b"x", b"X")
TEXT, RAW = b"t", b"x"  # blobs of entries
TEXT_RUNS, RAW_RUNS = b"T", b"X"  # blobs of doc_id runs and keys (pack_shards)


def raw_ids(doc_ids: List[str]) -> Optional[np.ndarray]:
    """The doc_ids as S16 raw bytes if every one is 32 lowercase hex digits, else None."""
    raw = hex_ids_raw(doc_ids)
    return None if raw is None else np.frombuffer(raw, dtype="S16")


def id_list(ids: np.ndarray) -> List[str]:
    """S16 raw or S32 text doc_ids back to ``str``."""
    if ids.dtype.itemsize == 16:
        return raw_ids_hex(ids.tobytes())
    return ids.astype("U32").tolist()


def as_text(ids: np.ndarray) -> np.ndarray:
    """S16 raw doc_ids as S32 hex text (the same order); S32 unchanged."""
    return np.asarray(id_list(ids), dtype="S32") if ids.dtype.itemsize == 16 else ids


def _block(blob: bytes) -> np.ndarray:
    """One ``pack_shards`` blob back to its (key, doc_id) entries, in the order they were packed."""
    tag, key_width = blob[:1], blob[1]
    width = 16 if tag in (RAW, RAW_RUNS) else 32
    if tag in (RAW, TEXT):
        rows = np.frombuffer(blob, dtype=np.uint8, offset=2).reshape(-1, key_width + width)
        entries = np.empty(len(rows), dtype=ENTRY_RAW if width == 16 else ENTRY)
        entries["k"] = keys_from_bytes(rows[:, :key_width], key_width)
        entries["d"] = np.ascontiguousarray(rows[:, key_width:]).view(f"S{width}").reshape(-1)
        return entries
    (n_docs,) = struct.unpack_from("<I", blob, 2)
    ids = np.frombuffer(blob, dtype=f"S{width}", count=n_docs, offset=6)
    runs = np.frombuffer(blob, dtype="<u2", count=n_docs, offset=6 + width * n_docs)
    keys = keys_from_bytes(np.frombuffer(blob, dtype=np.uint8, offset=6 + (width + 2) * n_docs), key_width)
    entries = np.empty(len(keys), dtype=ENTRY_RAW if width == 16 else ENTRY)
    entries["k"], entries["d"] = keys, np.repeat(ids, runs)
    return entries


def _entries(blobs: Iterable[bytes]) -> np.ndarray:
    """A shard's packed entries, raw if every blob is raw, else all as text."""
    parts = [_block(b) for b in blobs]
    if all(p.dtype == ENTRY_RAW for p in parts):
        return np.concatenate(parts)
    out = []
    for p in parts:
        if p.dtype == ENTRY_RAW:
            q = np.empty(len(p), dtype=ENTRY)
            q["k"], q["d"] = p["k"], as_text(p["d"])
            p = q
        out.append(p)
    return np.concatenate(out)


def pack_shards(doc_ids: List[str], keys: np.ndarray, shards: int,
                key_width: int = 8) -> Iterator[Tuple[int, bytes]]:
    """(shard, packed entries) for a batch: ``keys`` is (n_docs, bands) int64 keys of ``key_width`` bytes
    (``signatures.band_keys``).

    A blob is its tag, ``key_width`` (one byte), then the entries in the batch's order (doc by doc, so a
    document's keys that fall in one shard are one run), in the smaller of two forms: runs (tag ``X``, or ``T``
    for text ids): the number n of doc_id runs (uint32), their doc_ids (n x 16 raw bytes, or 32 bytes of
    text), their lengths (n x uint16) and the keys (``key_width`` little-endian bytes each); or entries (tag
    ``x`` / ``t``): (key, doc_id) each. Why runs: with few shards
    (``shards.shards_for``) a document has several keys in each shard's blob, and its doc_id is then sent
    once per blob, not once per key (T0 5k at 8 shards: BandGroup 0.54 -> 0.32 bytes per input byte). With
    thousands of shards a document has about one key per blob, and entries are smaller (no run header).
    Random bytes do not compress, so blobs are not compressed.
    """
    n, bands = keys.shape
    if n == 0 or bands == 0:
        return
    if bands > 0xFFFF:
        raise ValueError(f"dedup: {bands} bands do not fit the band blobs' uint16 run lengths")
    raw = raw_ids(doc_ids)
    ids = np.asarray([d.encode("ascii") for d in doc_ids], dtype="S32") if raw is None else raw
    width = 32 if raw is None else 16
    flat = keys.reshape(-1).astype("<i8", copy=False)
    shard = (flat.view(np.uint64) % np.uint64(shards)).astype(np.int64)
    order = np.argsort(shard, kind="stable")
    shard, narrow = shard[order], keys_to_bytes(flat[order], key_width)
    doc = order // bands  # the document of each entry (order is doc-major within a shard: a stable sort)
    new_shard = np.r_[True, shard[1:] != shard[:-1]]
    run_starts = np.flatnonzero(new_shard | np.r_[True, doc[1:] != doc[:-1]])
    run_lens = np.diff(np.r_[run_starts, len(doc)]).astype("<u2")
    run_ids = ids[doc[run_starts]]
    cuts = np.flatnonzero(np.r_[new_shard, True])
    at = np.searchsorted(run_starts, cuts)
    head = bytes([key_width])
    for lo, hi, r0, r1 in zip(cuts[:-1].tolist(), cuts[1:].tolist(), at[:-1].tolist(), at[1:].tolist()):
        if 4 + (width + 2) * (r1 - r0) < width * (hi - lo):
            yield int(shard[lo]), b"".join((RAW_RUNS if raw is not None else TEXT_RUNS, head,
                                            struct.pack("<I", r1 - r0), run_ids[r0:r1].tobytes(),
                                            run_lens[r0:r1].tobytes(), narrow[lo:hi].tobytes()))
        else:
            rows = np.empty((hi - lo, key_width + width), dtype=np.uint8)
            rows[:, :key_width] = narrow[lo:hi]
            rows[:, key_width:] = ids[doc[lo:hi]].view(np.uint8).reshape(-1, width)
            yield int(shard[lo]), (TEXT if raw is None else RAW) + head + rows.tobytes()


def bucket_pairs(members: Iterable[str], max_bucket_size: int, anchors: int) -> Tuple[list, bool]:
    """Sorted, distinct candidate pairs (a < b) of one bucket and whether the cap degraded it."""
    ids = sorted(set(members))
    m = len(ids)
    if m < 2:
        return [], False
    if m <= max_bucket_size:
        return [(ids[i], ids[j]) for i in range(m) for j in range(i + 1, m)], False
    heads = ids[:anchors]
    pairs = [(heads[i], heads[j]) for i in range(len(heads)) for j in range(i + 1, len(heads))]
    pairs.extend((h, x) for x in ids[anchors:] for h in heads)
    return pairs, True


def shard_buckets(blobs: Iterable[bytes]) -> Iterator[List[str]]:
    """The LSH buckets (members sorted, >= 2) among a shard's packed entries."""
    blobs = list(blobs)
    if not blobs:
        return
    entries = _entries(blobs)
    keys, docs = entries["k"], entries["d"]
    order = np.lexsort((docs, keys))
    keys, docs = keys[order], docs[order]
    cuts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    sizes = np.diff(cuts)
    multi = sizes >= 2
    for lo, size in zip(cuts[:-1][multi].tolist(), sizes[multi].tolist()):
        yield id_list(docs[lo:lo + size])


def shard_pairs(blobs: Iterable[bytes], max_bucket_size: int, anchors: int) -> Tuple[np.ndarray, np.ndarray,
                                                                                    np.ndarray, int, int]:
    """Every bucket's ``bucket_pairs`` for a shard's packed entries at once, with numpy.

    Returns (a, b, degraded, buckets, oversize): one row per (bucket, pair), a < b as S16 raw or S32 text
    doc_ids (see the module doc), the
    bucket's degraded flag, and the counts of buckets with two or more members and of capped ones. Why:
    one Python call per bucket and per pair was most of this step. Positions inside a bucket's sorted,
    distinct members give the same pairs: (i, j) with i < j and i < L, where L is the size up to
    ``max_bucket_size`` and ``anchors`` above it.
    """
    empty = np.zeros(0, dtype="S32")
    blobs = list(blobs)
    if not blobs:
        return empty, empty, np.zeros(0, dtype=bool), 0, 0
    entries = _entries(blobs)
    keys, docs = entries["k"], entries["d"]
    order = np.lexsort((docs, keys))
    keys, docs = keys[order], docs[order]
    distinct = np.r_[True, (keys[1:] != keys[:-1]) | (docs[1:] != docs[:-1])]
    keys, docs = keys[distinct], docs[distinct]
    cuts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    starts, sizes = cuts[:-1], np.diff(cuts)
    multi = sizes >= 2
    starts, sizes = starts[multi], sizes[multi]
    degraded = sizes > max_bucket_size
    heads = np.where(degraded, np.minimum(anchors, sizes), sizes)
    a_parts, b_parts, d_parts = [], [], []
    for i in range(int(heads.max()) if len(heads) else 0):
        sel = heads > i
        anchor = starts[sel] + i
        count = starts[sel] + sizes[sel] - anchor - 1  # members after the anchor
        firsts = np.repeat(np.cumsum(count) - count, count)
        left = np.repeat(anchor, count)
        right = left + 1 + (np.arange(len(left)) - firsts)
        a_parts.append(docs[left])
        b_parts.append(docs[right])
        d_parts.append(np.repeat(degraded[sel], count))
    if not a_parts:
        return empty, empty, np.zeros(0, dtype=bool), 0, 0
    return (np.concatenate(a_parts), np.concatenate(b_parts), np.concatenate(d_parts),
            len(starts), int(degraded.sum()))


def distinct_pairs(a: np.ndarray, b: np.ndarray, degraded: np.ndarray) -> Tuple[List[str], List[str], List[bool]]:
    """Distinct (a, b) rows, degraded only if every row of the pair was (as ``str`` lists). ``a`` and ``b``
    are both S16 raw or both S32 text (``shard_pairs``)."""
    order = np.lexsort((b, a))
    a, b, degraded = a[order], b[order], degraded[order]
    starts = np.flatnonzero(np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])])
    flags = np.logical_and.reduceat(degraded, starts) if len(starts) else degraded[:0]
    return id_list(a[starts]), id_list(b[starts]), flags.tolist()


class BucketPairsFn(beam.DoFn):
    """(band shard, packed entries) -> (shard of a, ("p", ``shards.pack_pairs`` (a, b, degraded))): distinct candidate pairs
    (a < b), gathered over the bundle and packed by the shard of the smaller doc_id, which is where the
    components' last step learns a's candidate component and sends the pair on to it (verify.py); and, on
    output ``edges``, every distinct pair as (a, b), the edges of the candidate graph whose components are
    computed first.

    A pair found in several bands or shards of the bundle leaves once (degraded only if every find was);
    the verification merges what other bundles send. At most ``FLUSH_PAIRS`` pairs are buffered.
    """

    FLUSH_PAIRS = 1 << 20  # (bucket, pair) rows buffered per bundle, ~130 bytes each
    EDGES = "edges"

    def __init__(self, max_bucket_size: int, anchors: int, shards: int) -> None:
        self.max_bucket_size = max_bucket_size
        self.anchors = anchors
        self.shards = shards
        self.buckets = Metrics.counter("dedup", "lsh_buckets_shared")
        self.oversize = Metrics.counter("dedup", "oversize_buckets")
        self.pairs = Metrics.counter("dedup", "candidate_pairs")
        self._rows: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._n = 0

    def start_bundle(self) -> None:
        self._rows, self._n = [], 0

    def process(self, element) -> Iterator[Block]:
        _shard, blobs = element
        a, b, degraded, buckets, oversize = shard_pairs(blobs, self.max_bucket_size, self.anchors)
        self.buckets.inc(buckets)
        self.oversize.inc(oversize)
        self.pairs.inc(len(a))
        if len(a):
            self._rows.append((a, b, degraded))
            self._n += len(a)
        if self._n >= self.FLUSH_PAIRS:
            yield from self._drain(lambda v: v)

    def finish_bundle(self):
        yield from self._drain(GlobalWindows.windowed_value)

    def _drain(self, wrap) -> Iterator[Any]:
        if not self._rows:
            return
        rows = self._rows
        if len({r[0].dtype.itemsize for r in rows}) > 1:  # raw and text ids in one bundle: all as text
            rows = [(as_text(a), as_text(b), d) for a, b, d in rows]
        a, b, degraded = (np.concatenate(col) for col in zip(*rows))
        self._rows, self._n = [], 0
        a_ids, b_ids, flags = distinct_pairs(a, b, degraded)
        buf = ShardBuffer(self.shards, len(a_ids) + 1, pack_pairs)
        where: Dict[str, int] = {}
        for pair in zip(a_ids, b_ids, flags):
            shard = where.get(pair[0])
            if shard is None:
                shard = where[pair[0]] = shard_of(pair[0], self.shards)
            buf.add_to(shard, pair)
        for s, blob in buf.drain():
            yield wrap((s, (PAIR, blob)))
        for edge in zip(a_ids, b_ids):
            yield beam.pvalue.TaggedOutput(self.EDGES, wrap(edge))
