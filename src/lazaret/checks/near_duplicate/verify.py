"""Verification of candidate pairs, as two shard-keyed joins carrying node values.

A node record is ``(signature, shingle set, n_shingles, shard of exact_key, exact_size, doc_id)``: the first three are
what ``signatures.similarity`` reads (see ``signatures.node_values``), so a record is compared as it is.

Why joins instead of carrying signatures through the band shuffle: a signature travels ``bands`` times in the
band shuffle but only twice here (once per join), and only candidate pairs pick up a copy. Why verify at all:
one shared band (``rows`` equal values) happens by chance for pairs far below the threshold; without this
step transitive closure chains such weak links into giant false clusters.

Why keyed by shard (shards.py) and not by doc_id: one element per node value and per candidate pair made
the runner's fixed per-element cost most of the verification's CPU. Join 1, keyed by the shard of ``b`` (the
larger doc_id of a pair), holds the node values of that shard's documents and the pairs whose larger end
lives there; join 2, keyed by the shard of ``a``, holds its node values and the half-pairs (a, degraded,
value of b) sent to it.

Why the value of the larger end travels to the smaller: pairs are mostly (anchor, member) of capped LSH
buckets (banding.py), and the anchor is a bucket's smallest doc_id. So join 2's blocks gather the records of
one anchor's partners, near-duplicates of each other, which the blocks' compression folds (shards.py): on
all of T0 join 2 moved 94.9 MB this way against 132.4 MB the other way round (docs/shuffles.md).

Values are tagged blobs, (tag, packed records): "n" node records, "p" pairs, "a" smaller pair ends, "h"
half-pairs. Join 1 passes on the node records of its shard's smaller pair ends next to the half-pairs it
sends, so join 2 groups one PCollection. Why:
FnApiRunner materialises every multi-input Flatten (a CoGroupByKey is one) as an extra write and read of
all its data, and the half-pairs, one node value per candidate pair, are the largest data of the stage.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Set, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from lazaret.checks.near_duplicate.shards import ShardBuffer, pack, unpack, unpack_all
from lazaret.checks.near_duplicate.signatures import similarity

Edge = Tuple[str, str]
NodeRecord = Tuple[bytes, bytes, int, int, int, str]  # (sig, set, n, exact-key shard, exact_size, doc_id)

FLUSH_ITEMS = 1 << 16  # records buffered per bundle before a flush (a node record is ~1 KB on T0)


NODE, PAIR, HALF, SMALLER = "n", "p", "h", "a"


def node_index(blocks: Iterable[bytes]) -> Dict[str, NodeRecord]:
    """doc_id -> node record for a shard. Every copy of a node's record is equal, so any one will do."""
    return {rec[5]: rec for rec in unpack_all(blocks)}


def by_tag(values: Iterable[Tuple[str, bytes]]) -> Dict[str, List[bytes]]:
    """A shard's tagged blobs, grouped by tag."""
    out: Dict[str, List[bytes]] = {NODE: [], PAIR: [], HALF: [], SMALLER: []}
    for tag, blob in values:
        out[tag].append(blob)
    return out


class _AttachLeft(beam.DoFn):
    """Join 1 (key: shard of b): send (a, degraded, record of b) to the shard of every distinct smaller
    partner a, and pass on (same key) for join 2 the node records of the shard's smaller pair ends ("a"
    blobs).

    Why only those: join 2 reads the record of a alone; a node that is no pair's smaller end (no pair at
    all, most records of a corpus without templates, or only larger ends) would cross the second shuffle
    for nothing.

    Output ``nodes``: (shard, ("n", packed ((x, record of x, False), ...))), once per node that is an end of a
    candidate pair, for the cluster step (see ``_VerifyRight``)."""

    NODES = "nodes"

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.out: ShardBuffer | None = None

    def start_bundle(self) -> None:
        self.out = ShardBuffer(self.shards, FLUSH_ITEMS)

    def process(self, element) -> Iterator[Any]:
        shard, tagged = element
        grouped = by_tag(tagged)
        values = node_index(grouped[NODE])
        needed = {a for blob in grouped[SMALLER] for a in unpack(blob)}
        if needed:
            yield shard, (NODE, pack([values[a] for a in sorted(needed) if a in values]))
        partners: Dict[Tuple[str, str], bool] = {}
        for a, b, degraded in unpack_all(grouped[PAIR]):
            partners[(a, b)] = partners.get((a, b), True) and degraded
        ends = sorted((needed | {b for _a, b in partners}) & values.keys())
        if ends:
            yield beam.pvalue.TaggedOutput(self.NODES, (shard, (NODE, pack([(x, values[x], False) for x in ends]))))
        for a, b in sorted(partners, key=lambda p: (p[1], p[0])):  # by b: each record packed in turn
            rec_b = values.get(b)
            if rec_b is None:  # cannot happen: every band entry has a node record
                continue
            self.out.add(a, (a, partners[(a, b)], rec_b))
            if self.out.full:
                for dest, blob in self.out.drain():
                    yield dest, (HALF, blob)

    def finish_bundle(self):
        for dest, blob in self.out.drain():
            yield GlobalWindows.windowed_value((dest, (HALF, blob)))


class _VerifyRight(beam.DoFn):
    """Join 2 (key: shard of a): Jaccard(a, b) (exact on shingle sets, else estimated) >= threshold keeps
    the edge.

    The cluster step needs the record of every node that has a kept edge and whether a degraded kept edge
    touches it. The records come from join 1 (``_AttachLeft``: once per node that is a pair end, each in its
    own shard); this step adds only record-less entries (doc_id, None, True) for both ends of a kept degraded
    edge (output ``nodes``, packed by the shard of the node). Why: noting both records of every kept edge
    here sent a node's record once per shard holding one of its partners (92.8 MB, 1.32 bytes per input
    byte, on all of T0, for 27,013 nodes with edges). A pair end whose pairs were all rejected sends its
    record for nothing; on T0 candidate pairs are mostly kept, and such nodes are few.
    """

    NODES = "nodes"

    def __init__(self, threshold: float, shards: int) -> None:
        self.threshold = threshold
        self.shards = shards
        self.kept = Metrics.counter("dedup", "verified_edges")
        self.rejected = Metrics.counter("dedup", "rejected_candidate_pairs")
        self.degraded: Set[str] = set()

    def start_bundle(self) -> None:
        self.degraded = set()

    def process(self, element) -> Iterator[Any]:
        _shard, tagged = element
        grouped = by_tag(tagged)
        values = node_index(grouped[NODE])
        kept = rejected = 0
        for a, degraded, rec_b in unpack_all(grouped[HALF]):
            rec_a = values.get(a)
            if rec_a is None:  # cannot happen: every band entry has a node record
                continue
            j, _exact = similarity(rec_a, rec_b)
            if j < self.threshold:
                rejected += 1
                continue
            kept += 1
            b = rec_b[5]
            yield (a, b)
            if degraded:
                self.degraded.update((a, b))
        self.kept.inc(kept)
        self.rejected.inc(rejected)
        if len(self.degraded) >= FLUSH_ITEMS:
            for shard, blob in self._drain():
                yield beam.pvalue.TaggedOutput(self.NODES, (shard, (NODE, blob)))

    def finish_bundle(self):
        for shard, blob in self._drain():
            yield beam.pvalue.TaggedOutput(self.NODES, GlobalWindows.windowed_value((shard, (NODE, blob))))

    def _drain(self):
        buf = ShardBuffer(self.shards, FLUSH_ITEMS)
        for doc_id in sorted(self.degraded):
            buf.add(doc_id, (doc_id, None, True))
        self.degraded = set()
        return buf.drain()


class VerifyPairs(beam.PTransform):
    """(node blocks: (shard, ("n", packed node records)), pair blocks: (shard of b, ("p", packed (a, b, degraded))),
    smaller ends: (shard of a, ("a", packed a)))
    -> {"edges": (a, b) with a < b (the components need only the ends; the flags travel with "nodes"),
    "nodes", "left_nodes": (shard, ("n", packed ((doc_id, node record or None, degraded), ...))): together, a
    record of every node that has an edge, and whether a degraded edge touches it (a node may appear in
    several blocks; its records are equal, flags are OR-ed; "left_nodes" holds the records, of every pair
    end, including ends whose pairs were all rejected, which the cluster step ignores; "nodes" only
    record-less degraded flags)}."""

    def __init__(self, threshold: float, shards: int) -> None:
        super().__init__()
        self.threshold = threshold
        self.shards = shards

    def expand(self, pcolls):
        out = (pcolls
               | "Tagged" >> beam.Flatten()
               | "JoinLeft" >> beam.GroupByKey()
               | "AttachLeft" >> beam.ParDo(_AttachLeft(self.shards)).with_outputs(_AttachLeft.NODES, main="half"))
        left_nodes = out[_AttachLeft.NODES]
        out = (out.half
               | "JoinRight" >> beam.GroupByKey()
               | "Verify" >> beam.ParDo(_VerifyRight(self.threshold, self.shards)).with_outputs(
                   _VerifyRight.NODES, main="edges"))
        return {"edges": out.edges, "nodes": out[_VerifyRight.NODES], "left_nodes": left_nodes}
