"""One response per (normalised response, first prompt MinHash slot), chosen in packed blocks.

Why: the response n-gram df counts identical responses given to prompts that share their first MinHash slot
once (``transform.PayloadCandidates``), with the response of the smallest doc_id. As a per-key ``MinFn`` combine
every record crossed the shuffle alone with its key, doc_id and response tokens (~112 bytes a T0 record,
0.088 bytes per input byte on all of T0): Beam's framing per element, and nothing repeated folds. Here a bundle
keeps the smallest value per key (the combiner lifting it did before), and sends up to ``BLOCK`` of them per
shard as one zstd-compressed pickle (``packing.pack``): the answers of one template, which T0 gives in
neighbouring records, fold. The shards' merge keeps the smallest value per key, so the chosen responses are
the same whatever the bundles.

A shard's merge holds its distinct keys in memory, so the shard count grows with the corpus (one per
``RECORDS_PER_SHARD`` records, a power of two): one shard on all of T0.
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, Iterable, Iterator, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from lazaret.graph.packing import pack, unpack

BLOCK = 20000  # values a bundle holds before sending them (bounds its memory; ~2 MB of T0 responses)
RECORDS_PER_SHARD = 1 << 16


def shard_count(records: int) -> int:
    """Smallest power of two with at most ``RECORDS_PER_SHARD`` records per shard."""
    n = 1
    while n * RECORDS_PER_SHARD < records:
        n *= 2
    return n


def _shard(key: Tuple[str, int], shards: int) -> int:
    return zlib.crc32(f"{key[0]}\x00{key[1]}".encode("utf-8", "surrogatepass")) & (shards - 1)


class PackSmallest(beam.DoFn):
    """(key, value) -> (shard, packed [(key, smallest value of the bundle)]), at most ``BLOCK`` pairs a block."""

    def __init__(self) -> None:
        self._acc: Dict[Any, Any] = {}

    def start_bundle(self):
        self._acc = {}

    def process(self, kv: Tuple[Any, Any], totals: Dict[str, Any]) -> Iterator[Tuple[int, bytes]]:
        self._shards = shard_count(int(totals["records"]))
        key, value = kv
        acc = self._acc
        old = acc.get(key)
        if old is None or value < old:
            acc[key] = value
        if len(acc) >= BLOCK:
            yield from self._flush()

    def _flush(self) -> Iterator[Tuple[int, bytes]]:
        acc, self._acc = self._acc, {}
        if not acc:
            return
        shards = self._shards
        by_shard: Dict[int, list] = {}
        for kv in acc.items():  # arrival order: neighbouring records' answers fold
            by_shard.setdefault(_shard(kv[0], shards), []).append(kv)
        for s in sorted(by_shard):
            yield s, pack(by_shard[s])

    def finish_bundle(self):
        yield from map(GlobalWindows.windowed_value, self._flush())


def smallest_per_key(kv: Tuple[int, Iterable[bytes]]) -> Iterator[Tuple[Any, Any]]:
    """(shard, packed blocks) -> (key, smallest value) for every key of the shard."""
    best: Dict[Any, Any] = {}
    for blob in kv[1]:
        for key, value in unpack(blob):
            old = best.get(key)
            if old is None or value < old:
                best[key] = value
    yield from best.items()
