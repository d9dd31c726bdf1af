"""Exact-duplicate groups by hash of the normalised text, as a shard-keyed shuffle with bounded state.

Records travel packed by the shard of their exact key (shards.py), one element per (bundle, shard) instead
of one per record. Copies of one text are merged inside the bundle before they leave (representative =
smallest doc_id and the count: what a combiner lift did), so a document repeated 10 million times costs one
entry per bundle, and a shard keeps one entry per distinct text.

An entry carries the text's LSH band keys, not the text: the bundle computes the signature of each of its
distinct texts (``transform._PrepareFn``), sends the node record (with the text) straight to the
components' last shuffle, and only the band keys cross this one (``bands`` x ``band_key_bytes`` bytes against
the normalised text: 0.49 bytes per input byte on the T0 5k slice with 8-byte keys, docs/shuffles.md; keys are
5 bytes on inputs up to ~117 MB, ``signatures.band_key_bytes_for``). The group's
representative (its smallest doc_id) then sends its band keys on to the band shuffle, and its home shard
and exact size to where its label is made. What it costs: a text copied across bundles gets a signature
in every bundle that holds a copy, where it got one in all.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from lazaret.checks.near_duplicate.banding import pack_shards
from lazaret.checks.near_duplicate.params import DedupParams
from lazaret.checks.near_duplicate.shards import Block, ShardBuffer, home_of, pack_rows, unpack_all
from lazaret.checks.near_duplicate.signatures import keys_from_bytes

# packed exact entry: (exact_key as 16 raw bytes, representative doc_id, n_tokens, count, band keys or b""), the band
# keys as ``signatures.keys_to_bytes`` makes them (``band_key_bytes`` little-endian bytes a key)
ExactEntry = Tuple[bytes, str, int, int, bytes]

SIZE = "s"  # tag of (doc_id, home shard, exact size) entries for the components' last shuffle


def merge_group(groups: Dict[str, List], key: str, doc_id: str, norm: str, n_tokens: int, count: int) -> None:
    """Fold one (part of an) exact group into ``groups``: keep the smallest doc_id, add the counts."""
    g = groups.get(key)
    if g is None:
        groups[key] = [doc_id, norm, n_tokens, count]
        return
    g[3] += count
    if doc_id < g[0]:
        g[0], g[1], g[2] = doc_id, norm, n_tokens


def pack_groups(groups: Dict[str, List], keys: Dict[str, bytes], shards: int) -> List[Block]:
    """Bundle-merged groups as (shard of exact key, entries) blocks; ``keys``: exact key -> band keys bytes."""
    buf = ShardBuffer(shards, len(groups) + 1)
    for key, (doc_id, _norm, n_tokens, count) in groups.items():
        buf.add(key, (bytes.fromhex(key), doc_id, n_tokens, count, keys.get(key, b"")))  # 16 raw bytes
    return buf.drain()


class ExactShardFn(beam.DoFn):
    """(shard, exact entry blocks) -> band entries of every exact group whose text has at least ``ngram`` words
    (the ones with a MinHash signature), packed by band shard (``banding.pack_shards``); output
    ``sizes``: (shard of doc_id, ("s", ``shards.pack_rows`` (representative, home shard, exact size))): where the
    components' last step finds the node's home (``shards.home_of``) and exact size.

    Band entries are gathered over the bundle (flushed every ``FLUSH_ENTRIES``), so a bundle sends about
    ``band_shards`` elements, not ``bands`` per document.
    """

    SIZES = "sizes"
    FLUSH_ENTRIES = 1 << 20  # ~24-40 MB of packed (key, doc_id) entries

    def __init__(self, params: DedupParams) -> None:
        self.params = params
        self.docs = Metrics.counter("dedup", "minhash_signatures")
        self._ids: List[str] = []
        self._keys: List[bytes] = []  # each document's band keys, as they crossed the exact shuffle
        self._sizes: Optional[ShardBuffer] = None

    def start_bundle(self) -> None:
        self._ids, self._keys = [], []
        self._sizes = ShardBuffer(self.params.band_shards, 1 << 16, lambda rows: pack_rows(rows, 1))

    def process(self, element: Tuple[int, Iterable[bytes]]) -> Iterator:
        _shard, blocks = element
        groups: Dict[bytes, List] = {}
        for key, doc_id, n_tokens, count, band_b in unpack_all(blocks):
            g = groups.get(key)
            if g is None:
                groups[key] = [doc_id, n_tokens, count, band_b]
            else:
                g[2] += count
                if doc_id < g[0]:
                    g[0], g[1], g[3] = doc_id, n_tokens, band_b
        bands, width = self.params.bands, self.params.band_key_bytes
        for key in sorted(groups):
            doc_id, n_tokens, count, band_b = groups[key]
            if n_tokens >= self.params.ngram:
                self._ids.append(doc_id)
                self._keys.append(band_b)
                key0 = int.from_bytes(band_b[:width], "little")  # the first band key, as home_of reads it
                self._sizes.add(doc_id, (doc_id, home_of(key0, self.params.band_shards), count))
        if len(self._ids) * bands >= self.FLUSH_ENTRIES:
            yield from self._flush()
        if self._sizes.full:
            for shard, blob in self._sizes.drain():
                yield beam.pvalue.TaggedOutput(self.SIZES, (shard, (SIZE, blob)))

    def finish_bundle(self):
        for block in self._flush():
            yield GlobalWindows.windowed_value(block)
        for shard, blob in self._sizes.drain():
            yield beam.pvalue.TaggedOutput(self.SIZES, GlobalWindows.windowed_value((shard, (SIZE, blob))))

    def _flush(self) -> List[Tuple[int, bytes]]:
        if not self._ids:
            return []
        p = self.params
        ids, keys = self._ids, keys_from_bytes(b"".join(self._keys), p.band_key_bytes).reshape(-1, p.bands)
        self._ids, self._keys = [], []
        self.docs.inc(len(ids))
        return list(pack_shards(ids, keys, p.band_shards, p.band_key_bytes))
