"""LSH banding as a shuffle: band keys batched into shards, candidate pairs per bucket with a size cap.

Why shards: one shuffle element per (band, bucket) made the band shuffle the biggest cost of the stage (21
elements per document, each paying the runner's per-element overhead). Instead each signature batch packs
its (band_key, doc_id) entries into one numpy blob per shard (``band_key mod band_shards``); the shard
reducer sorts its entries by key and walks the runs of equal keys, which are exactly the LSH buckets.
Memory per shard is ``entries * 40 bytes`` with ``entries ~ docs * bands / band_shards``: raise
``band_shards`` for corpora beyond ~100M records.

Bucket cap: a bucket with m members would give m(m-1)/2 pairs. Up to ``max_bucket_size`` members we emit
all of them (verification keeps the true ones). Beyond that, every member is paired only with the bucket's
``bucket_anchors`` smallest doc_ids: O(m * anchors) pairs (the anchor scheme NeMo Curator also uses). A member
similar only to non-anchor members can then be missed by this bucket (other bands usually still find it).
Such pairs carry ``degraded=True`` so the cluster detail says so, and ``dedup/oversize_buckets`` counts it.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from lazaret.dedup.shards import Block, ShardBuffer
from lazaret.dedup.verify import PAIR

ENTRY = np.dtype([("k", "<i8"), ("d", "S32")])


def pack_shards(doc_ids: List[str], keys: np.ndarray, shards: int) -> Iterator[Tuple[int, bytes]]:
    """(shard, packed entries) for a batch: ``keys`` is (n_docs, bands) int64."""
    n, bands = keys.shape
    entries = np.empty(n * bands, dtype=ENTRY)
    entries["k"] = keys.reshape(-1)
    entries["d"] = np.repeat(np.asarray([d.encode("ascii") for d in doc_ids], dtype="S32"), bands)
    shard = (keys.reshape(-1).view(np.uint64) % np.uint64(shards)).astype(np.int64)
    order = np.argsort(shard, kind="stable")
    shard, entries = shard[order], entries[order]
    cuts = np.flatnonzero(np.r_[True, shard[1:] != shard[:-1], True])
    for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
        yield int(shard[lo]), entries[lo:hi].tobytes()


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
    parts = [np.frombuffer(b, dtype=ENTRY) for b in blobs]
    if not parts:
        return
    entries = np.concatenate(parts)
    keys, docs = entries["k"], entries["d"]
    order = np.lexsort((docs, keys))
    keys, docs = keys[order], docs[order]
    cuts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    sizes = np.diff(cuts)
    multi = sizes >= 2
    for lo, size in zip(cuts[:-1][multi].tolist(), sizes[multi].tolist()):
        yield [d.decode("ascii") for d in docs[lo:lo + size].tolist()]


class BucketPairsFn(beam.DoFn):
    """(band shard, packed entries) -> (shard of a, ("p", packed (a, b, degraded))): distinct candidate pairs, gathered
    over the bundle and packed by the shard of the smaller doc_id (the key of the first verification join).

    A pair found in several bands or shards of the bundle leaves once (degraded only if every find was);
    the join merges what other bundles send. At most ``FLUSH_PAIRS`` pairs are buffered.
    """

    FLUSH_PAIRS = 1 << 19

    def __init__(self, max_bucket_size: int, anchors: int, shards: int) -> None:
        self.max_bucket_size = max_bucket_size
        self.anchors = anchors
        self.shards = shards
        self.buckets = Metrics.counter("dedup", "lsh_buckets_shared")
        self.oversize = Metrics.counter("dedup", "oversize_buckets")
        self.pairs = Metrics.counter("dedup", "candidate_pairs")
        self._pairs: Dict[Tuple[str, str], bool] = {}

    def start_bundle(self) -> None:
        self._pairs = {}

    def process(self, element) -> Iterator[Block]:
        _shard, blobs = element
        found = self._pairs
        n_buckets = n_oversize = n_pairs = 0
        for members in shard_buckets(blobs):
            pairs, degraded = bucket_pairs(members, self.max_bucket_size, self.anchors)
            if not pairs:
                continue
            n_buckets += 1
            n_oversize += degraded
            n_pairs += len(pairs)
            for pair in pairs:
                found[pair] = found.get(pair, True) and degraded
        self.buckets.inc(n_buckets)
        self.oversize.inc(n_oversize)
        self.pairs.inc(n_pairs)
        if len(found) >= self.FLUSH_PAIRS:
            for shard, blob in self._drain():
                yield shard, (PAIR, blob)

    def finish_bundle(self):
        for shard, blob in self._drain():
            yield GlobalWindows.windowed_value((shard, (PAIR, blob)))

    def _drain(self) -> List[Block]:
        buf = ShardBuffer(self.shards, len(self._pairs) + 1)
        for (a, b), degraded in self._pairs.items():
            buf.add(a, (a, b, degraded))
        self._pairs = {}
        return buf.drain()
