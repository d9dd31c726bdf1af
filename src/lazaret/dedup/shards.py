"""Shard-packed shuffles: many small per-document records travel as one element per (bundle, shard).

Why: on the portable runners every shuffle element pays a fixed cost (encode, runner-side buffering, decode,
one call per fused operation). Keyed by doc_id, the verification joins moved one element per node value and
per candidate pair, and that fixed cost, not the Jaccard work, was most of their CPU. Keyed by a hash shard
of the doc_id instead, with a bundle's records packed per shard, the same data moves as a few thousand
elements. Nothing is collected on one worker: a shard holds about ``records / shards`` records, the same
bound as the band-key shards (banding.py), and a buffer is flushed once it holds ``flush_items`` records.
"""

from __future__ import annotations

import zlib
from typing import Any, Dict, Iterator, List, Tuple

from apache_beam.transforms.window import GlobalWindows

Block = Tuple[int, Tuple[Any, ...]]  # (shard, packed records)


def shard_of(doc_id: str, shards: int) -> int:
    """Deterministic on every worker and runner (CRC-32 of the UTF-8 doc_id, never Python's ``hash``)."""
    return zlib.crc32(doc_id.encode("utf-8")) % shards


class ShardBuffer:
    """Records gathered per shard over a bundle; ``drain`` packs them as one tuple per shard."""

    def __init__(self, shards: int, flush_items: int) -> None:
        self.shards = shards
        self.flush_items = flush_items
        self.parts: Dict[int, List[Any]] = {}
        self.items = 0

    def add(self, doc_id: str, record: Any) -> None:
        """Buffer ``record`` for the shard of ``doc_id``."""
        self.add_to(shard_of(doc_id, self.shards), record)

    def add_to(self, shard: int, record: Any) -> None:
        part = self.parts.get(shard)
        if part is None:
            self.parts[shard] = part = []
        part.append(record)
        self.items += 1

    @property
    def full(self) -> bool:
        return self.items >= self.flush_items

    def drain(self) -> List[Block]:
        """(shard, records) for every non-empty shard, in shard order; the buffer is empty afterwards."""
        parts, self.parts, self.items = self.parts, {}, 0
        return [(shard, tuple(parts[shard])) for shard in sorted(parts)]

    def drain_windowed(self) -> Iterator[Any]:
        """``drain`` for ``finish_bundle``, which must emit windowed values."""
        for block in self.drain():
            yield GlobalWindows.windowed_value(block)
