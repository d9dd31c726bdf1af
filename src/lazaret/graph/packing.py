"""Records cross every shuffle as one compressed ``bytes`` value, not as a dict.

Why: Beam's local runners (the in-process FnApiRunner, ``multi_processing`` and the portable job service)
group a shuffle by decoding every value into a Python object and holding it in the runner process until
the next stage has read it. A record dict of 1 KB of JSON costs ~10 KB as Python objects there, so the
runner's memory grew ~28 KB per record with the three record-carrying shuffles (spread, join, writers).
A ``bytes`` value is held as it is: pickled and zstd-compressed (the raw line, parsed fields and the
prompt/response sides repeat the same text, which the compressor folds) a T0 record costs 820 bytes, less
than its 1,150-byte JSON line and a third of its pickle. Distributed runners shuffle bytes anyway, so this
costs them only the (de)compression: ~9 µs to pack and ~4 µs to unpack a T0 record (zlib level 1 took
26 and 8 µs for the same size).

The bytes never leave the pipeline: they are made and read by this module only, never from user files.
"""

from __future__ import annotations

import pickle
import threading
import zlib
from typing import Any, Iterable, List, Tuple

import apache_beam as beam
import zstandard

_LEVEL = 1  # fastest level: most of the gain (repeated text) for little CPU
# One (compressor, decompressor) per thread: zstandard's objects are not safe to share between threads, and
# making one per call doubles the cost. A per-thread codec cache, not data: nothing here is ever pickled.
_codecs = threading.local()


def _codec() -> Tuple[Any, Any]:
    pair = getattr(_codecs, "pair", None)
    if pair is None:
        pair = _codecs.pair = (zstandard.ZstdCompressor(level=_LEVEL), zstandard.ZstdDecompressor())
    return pair


def pack(obj: Any) -> bytes:
    return _codec()[0].compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def unpack(data: bytes) -> Any:
    return pickle.loads(_codec()[1].decompress(data))


# The writers' batches (a shard's rows of one bundle, as columns: io.writers.pack_columns) use a slower level
# than single values: they are a small part of the bytes a scan packs, and fold more. Measured on T0 5k's
# findings/ rows and clean lines (8.3 MB pickled): levels 1 / 3 / 7 / 9 give 508 / 500 / 441 / 434 KB for
# 0.006 / 0.007 / 0.030 / 0.042 CPU-s (level 7: ~5 CPU-s more per GB of input than level 1, against ~1,800 for
# a scan without NER). Not for PackPerKey's lists of decisions: 7 made GroupDecisions larger (0.039 against
# 0.037 bytes per input byte).
BATCH_LEVEL = 7


def pack_batch(obj: Any) -> bytes:
    """``pack`` at BATCH_LEVEL; :func:`unpack` reads it (zstd frames decode the same whatever the level)."""
    batch = getattr(_codecs, "batch", None)
    if batch is None:
        batch = _codecs.batch = zstandard.ZstdCompressor(level=BATCH_LEVEL)
    return batch.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def compress(data: bytes) -> bytes:
    """Bytes compressed with the same codec as ``pack`` (for values that are bytes already)."""
    return _codec()[0].compress(data)


def decompress(data: bytes) -> bytes:
    return _codec()[1].decompress(data)


def dump_record(record: Any) -> bytes:
    """A record as the bytes it crosses from the readers to the checks in (``pipeline.build``, "AllRecords").

    Why: that crossing is not a shuffle but the in-process runner still encodes every element into its data
    channel and decodes it in the next stage. A record dict through Beam's FastPrimitivesCoder costs ~7 + ~10 µs
    and 5.1 KB on T0 (its texts once per field, sides and text); pickled, ~4 + ~7 µs and 2.8 KB (pickle writes a
    string shared by two fields once), so less also goes through the channel's buffers and spill files."""
    return pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)


def load_record(data: bytes) -> Any:
    return pickle.loads(data)  # made by dump_record in this scan, never from a file


def pack_value(kv: Tuple[Any, Any]) -> Tuple[Any, bytes]:
    return kv[0], pack(kv[1])


def unpack_all(values: Iterable[bytes]) -> List[Any]:
    return [unpack(v) for v in values]


# Consecutive records of a file that travel together through ``SpreadInBlocks``. Measured on all 55,185 T0
# records with the shipped 20,000-sentence NER cache (bench/pii_cache_order.py, issue 21; docs/pii.md): records
# spread one by one made spaCy tag 25.8 M characters; blocks of 1,000 / 2,000 / 5,000 records 15.8 / 14.4 /
# 11.8 M; file order 11.5 M. Larger blocks keep more repeats together but leave fewer units of work to spread over workers
# (a 5,000-record block of T0 is ~6 MB and ~1 CPU-minute of PII: small for a cluster, coarse for a laptop
# scan of a few thousand records on 2 workers).
SPREAD_BLOCK = 5000


# Consecutive records of a file whose decisions ``lazaret.graph.decide.Mix`` applies in one task, reading
# them again from the file. Larger than SPREAD_BLOCK because a block of a compressed file is read again by
# decompressing the file from its start: the re-reads of a file of B blocks decompress it ~B/2 times (a
# 1 GB gzip of ~1M T0 records, 20 blocks: ~10 times, ~30 CPU-s against ~2,600 for its scan). Still small
# enough that a large file is mixed by several workers, and a block's decisions (~1 in 3 records on T0)
# are a few MB.
MIX_BLOCK = 50000


def block_key(record: Any, block: int = SPREAD_BLOCK) -> int:
    """A shuffle key shared by ``block`` consecutive records of one file: CRC-32 of the path, block number."""
    path = str(record.get("source_path", "")).encode("utf-8", "surrogatepass")
    return (zlib.crc32(path) << 40) | (int(record.get("source_index") or 0) // block)


class SpreadInBlocks(beam.PTransform):
    """Spread records over workers in blocks of consecutive records of a file, packed (same elements out).

    Why not ``beam.Reshuffle``: it gives every record its own random key, so a worker sees the corpus in a
    random order. Corpora repeat text near where it first appears (T0 renders one passage under several
    templates in neighbouring files; chat logs quote the message before), and the PII check's NER cache is
    bounded: with records in random order its hit rate fell as the scan grew, and PII cost per byte with
    it (14,652 CPU-s per GB on 55,185 T0 records against 8,559 on the first 10,000). Keyed by block, a
    worker reads each block in file order on the runners used here, so the hit rate, and the cost per byte,
    depend on the corpus, not on the size of the scan. Results never depend on the order (the cache returns
    what NER would); only the cost does. The group is read lazily, never held whole by this transform."""

    def __init__(self, block: int = SPREAD_BLOCK, dumped: bool = False) -> None:
        """``dumped``: give each record as :func:`dump_record`'s bytes (only decompressed), not as a dict."""
        super().__init__()
        self.block = block
        self.dumped = dumped

    def expand(self, pcoll):
        block = self.block
        grouped = (pcoll
                   | "KeyAndPack" >> beam.Map(lambda r: (block_key(r, block), pack(r)))
                   | "GroupBlocks" >> beam.GroupByKey())
        if self.dumped:  # pack is dump_record's pickle, compressed
            return grouped | "Unpack" >> (beam.FlatMap(lambda kv: (decompress(v) for v in kv[1]))
                                          .with_output_types(bytes))
        return grouped | "Unpack" >> beam.FlatMap(lambda kv: (unpack(v) for v in kv[1]))


class PackPerKey(beam.DoFn):
    """(key, value) -> (key, packed list of values): the values of one bundle and one key compressed together,
    up to ``max_values`` per list.

    Why: a shuffle keyed by a mix block (``MIX_BLOCK``) receives one small value per decided record (its
    decision, ~100 bytes packed alone) or per chosen evidence member; one element each costs Beam's framing
    and a zstd frame apiece, and nothing repeated folds. In one list per bundle and key, the repeated rule,
    reason and span values are paid once. What a bundle holds open is bounded over all keys
    (``MAX_PENDING_VALUES``): with many keys every open list is sent when the bound is reached. Consumers
    must not depend on how values were listed (the mix looks its decisions up by doc_id)."""

    MAX_PENDING_VALUES = 20000

    def __init__(self, max_values: int = 1000) -> None:
        self.max_values = max_values
        self.open: dict = {}
        self.pending = 0

    def start_bundle(self) -> None:
        self.open = {}
        self.pending = 0

    def process(self, kv: Tuple[Any, Any]):
        key, value = kv
        values = self.open.setdefault(key, [])
        values.append(value)
        self.pending += 1
        if len(values) >= self.max_values:
            del self.open[key]
            self.pending -= len(values)
            yield key, pack(values)
        elif self.pending >= self.MAX_PENDING_VALUES:
            yield from self._drain()

    def _drain(self):
        open_, self.open, self.pending = self.open, {}, 0
        for key in sorted(open_):
            yield key, pack(open_[key])

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindows

        for kv in self._drain():
            yield GlobalWindows.windowed_value(kv)
