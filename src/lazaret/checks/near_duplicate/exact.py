"""Exact-duplicate groups by hash of the normalised text, as a shard-keyed shuffle with bounded state.

Records travel packed by the shard of their exact key (shards.py), one element per (bundle, shard) instead
of one per record. Copies of one text are merged inside the bundle before they leave (representative =
smallest doc_id, with its normalised text, and the count: what a combiner lift did), so a document repeated
10 million times costs one entry per bundle, and a shard keeps one entry per distinct text.
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, List, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from lazaret.checks.near_duplicate.shards import Block, ShardBuffer, unpack_all

# packed exact entry: (exact_key, representative doc_id, norm, n_tokens, count)
ExactEntry = Tuple[str, str, str, int, int]


def merge_group(groups: Dict[str, List], key: str, doc_id: str, norm: str, n_tokens: int, count: int) -> None:
    """Fold one (part of an) exact group into ``groups``: keep the smallest doc_id, add the counts."""
    g = groups.get(key)
    if g is None:
        groups[key] = [doc_id, norm, n_tokens, count]
        return
    g[3] += count
    if doc_id < g[0]:
        g[0], g[1], g[2] = doc_id, norm, n_tokens


def pack_groups(groups: Dict[str, List], shards: int) -> List[Block]:
    """Bundle-merged groups as (shard of exact key, entries) blocks."""
    buf = ShardBuffer(shards, len(groups) + 1)
    for key, (doc_id, norm, n_tokens, count) in groups.items():
        buf.add(key, (key, doc_id, norm, n_tokens, count))
    return buf.drain()


class ExactShardFn(beam.DoFn):
    """(shard, exact entry blocks) -> batches of (representative doc_id, norm, exact_key, exact_size), one per
    exact group whose text has at least ``ngram`` words (the ones that get a MinHash signature).

    Batches of ``batch_size`` are gathered over the bundle here rather than by ``BatchElements``: that saves
    one runner operation per representative, and a signature does not depend on its batch.
    """

    def __init__(self, ngram: int, batch_size: int) -> None:
        self.ngram = ngram
        self.batch_size = batch_size
        self.batch: List[Tuple[str, str, str, int]] = []

    def start_bundle(self) -> None:
        self.batch = []

    def process(self, element: Tuple[int, Iterable[Tuple[ExactEntry, ...]]]) -> Iterator[List]:
        _shard, blocks = element
        groups: Dict[str, List] = {}
        for key, doc_id, norm, n_tokens, count in unpack_all(blocks):
            merge_group(groups, key, doc_id, norm, n_tokens, count)
        for key in sorted(groups):
            doc_id, norm, n_tokens, count = groups[key]
            if n_tokens >= self.ngram:
                self.batch.append((doc_id, norm, key, count))
        while len(self.batch) >= self.batch_size:
            batch, self.batch = self.batch[: self.batch_size], self.batch[self.batch_size:]
            yield batch

    def finish_bundle(self):
        if self.batch:
            batch, self.batch = self.batch, []
            yield GlobalWindows.windowed_value(batch)
