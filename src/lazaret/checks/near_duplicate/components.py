"""Connected components as Beam shuffles: alternating large-star / small-star (Kiveris et al., 2014).

Why this algorithm: every step is one GroupByKey over the edge list, memory per key is one node's
neighbourhood, and it converges in O(log^2 n) rounds (a chain of n nodes too, where min-label propagation
needs n rounds). Beam graphs are static, so ``max_rounds`` rounds are unrolled; each round counts the
nodes where it changed the edge set, and once a round changes nothing the edges bypass the remaining
rounds (a gate reading the per-bundle counts as list side inputs), so converged graphs cost one extra pass,
not ``max_rounds`` shuffles.

At convergence every component is a star around its smallest doc_id, which is the cluster id. If the graph
has not converged after ``max_rounds``, nodes still pointing into an unfinished star become roots of their
own sub-cluster: the result is a refinement of the true components (fewer merges, never a wrong merge), and
``dedup/cc_not_converged_nodes`` counts the nodes affected.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from lazaret.checks.near_duplicate.shards import ShardBuffer, pack, pack_edges, unpack_edges

Label = Tuple[str, str, bool]  # (node, cluster_id, converged)


def large_star(node: str, neighbours: Iterable[str]) -> List[Tuple[str, str]]:
    """Connect every strictly larger neighbour of ``node`` to the smallest of node + neighbours."""
    nbrs = set(neighbours)
    nbrs.discard(node)
    if not nbrs:
        return []
    m = min(min(nbrs), node)
    return [(m, y) for y in sorted(nbrs) if y > node]


def small_star(node: str, smaller: Iterable[str]) -> List[Tuple[str, str]]:
    """Connect node and its smaller neighbours to the smallest of them."""
    nbrs = {y for y in smaller if y < node}
    if not nbrs:
        return []
    m = min(nbrs)
    return [(m, y) for y in sorted(nbrs | {node}) if y != m]


def assign_label(node: str, parents: Iterable[str], children: Iterable[str]) -> Label:
    """Final label from the star edges around ``node`` (see module doc for the non-converged case)."""
    ps = set(parents)
    cs = set(children)
    if not ps:
        return node, node, True
    if cs:
        return node, node, False
    return node, min(ps), len(ps) == 1


def local_forest(edges: Iterable[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """Star forest with the same connectivity as ``edges``: (component min, node) for every other node."""
    parent: Dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for u, v in edges:
        ru, rv = find(u), find(v)
        if ru != rv:
            lo, hi = (ru, rv) if ru < rv else (rv, ru)
            parent[hi] = lo
            parent.setdefault(lo, lo)
    return sorted((find(x), x) for x in parent if find(x) != x)


class LocalForestFn(beam.DoFn):
    """Bounded pre-reduction: each bundle's edges, ``max_edges`` at a time, become a star forest.

    Why: verified edges of templated corpora are dense (many edges per node); a forest keeps the
    connectivity with fewer edges and depth 1, so the distributed rounds below move less data and converge
    sooner. Memory is bounded by ``max_edges`` per worker; it is an optimisation, not the algorithm (the
    large-star/small-star rounds compute the components). 0 disables it.

    A full buffer is replaced by its forest, and edges keep coming, while the forest fills at most ``KEEP``
    of it; only a bigger forest is emitted. Why: one forest per bundle is already a star forest, so the
    rounds change nothing and are skipped, where two overlapping forests cost every round (4x T0: 149k
    edges, an 86k-edge forest; emitting at 100k edges cost three more rounds). Each compaction absorbs at
    least (1 - KEEP) * max_edges new edges, so an edge takes part in at most 1 / (1 - KEEP) of them.
    """

    KEEP = 0.9
    FORESTS = "forests"  # per bundle: how many edge sets it emitted that are not known to be one star forest

    def __init__(self, max_edges: int) -> None:
        self.max_edges = max_edges
        self.buffer: List[Tuple[str, str]] = []
        self.emitted = 0

    def start_bundle(self) -> None:
        self.buffer = []
        self.emitted = 0

    def process(self, edge: Tuple[str, str]):
        if self.max_edges <= 0:
            self.emitted = 2  # raw edges: never known to be a star forest
            yield edge
            return
        self.buffer.append(edge)
        if len(self.buffer) >= self.max_edges:
            forest = local_forest(self.buffer)
            if len(forest) > self.KEEP * self.max_edges:
                self.buffer = []
                self.emitted += 1
                yield from forest
            else:  # keep the forest and go on adding edges: one forest for the bundle if it fits
                self.buffer = forest

    def finish_bundle(self):
        if self.buffer:
            edges, self.buffer = self.buffer, []
            self.emitted += 1
            for e in local_forest(edges):
                yield GlobalWindows.windowed_value(e)
        if self.emitted:
            yield beam.pvalue.TaggedOutput(self.FORESTS, GlobalWindows.windowed_value(self.emitted))


EdgeBlock = Tuple[int, Tuple[Tuple[str, str], ...]]  # (shard of the first node, ((node, neighbour), ...))

FLUSH_ENTRIES = 1 << 18  # (node, neighbour) entries buffered per bundle (~40 MB)


def _group(blocks: Iterable[Tuple[Tuple[str, str], ...]]) -> Dict[str, set]:
    """node -> set of neighbours, from a shard's (node, neighbour) entries (duplicates collapse)."""
    nbrs: Dict[str, set] = {}
    for block in blocks:
        for node, other in unpack_edges(block):
            got = nbrs.get(node)
            if got is None:
                nbrs[node] = {other}
            else:
                got.add(other)
    return nbrs


class _PackEdgesFn(beam.DoFn):
    """Edges (u, v) -> both directions, (u, v) and (v, u), packed by the shard of the first node."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.buf: ShardBuffer | None = None

    def start_bundle(self) -> None:
        self.buf = ShardBuffer(self.shards, FLUSH_ENTRIES, pack_edges)

    def process(self, edge: Tuple[str, str]):
        u, v = edge
        self.buf.add(u, (u, v))
        self.buf.add(v, (v, u))
        if self.buf.full:
            yield from self.buf.drain()

    def finish_bundle(self):
        yield from self.buf.drain_windowed()


class _StepFn(beam.DoFn):
    """One star step over a shard's nodes. Output edges are packed by the shard of the node that keys the
    next step; the nodes where the step changed the edge set are counted over the bundle and leave as one
    number per bundle (output ``changed``), not one element per changed node."""

    CHANGED = "changed"

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.changed = 0
        self.buf: ShardBuffer | None = None

    def start_bundle(self) -> None:
        self.changed = 0
        self.buf = ShardBuffer(self.shards, FLUSH_ENTRIES, pack_edges)

    def process(self, element):
        _shard, blocks = element
        nbrs = _group(blocks)
        for node in sorted(nbrs):
            self.step(node, nbrs[node])
        if self.buf.full:
            yield from self.buf.drain()

    def finish_bundle(self):
        yield from self.buf.drain_windowed()
        if self.changed:
            yield beam.pvalue.TaggedOutput(self.CHANGED, GlobalWindows.windowed_value(self.changed))

    def step(self, node: str, nbrs: set) -> None:
        raise NotImplementedError


class _LargeStarFn(_StepFn):
    """Large-star step at each node; edges leave keyed by their larger end (the small-star key).

    The step leaves the edge set as it is iff, at every node, the smallest of node + neighbours is the node
    itself or the node has no larger neighbour; anything else counts as a change.
    """

    def step(self, node: str, nbrs: set) -> None:
        out = large_star(node, nbrs)
        if out and out[0][0] < node:
            self.changed += 1
        for m, y in out:  # m < y: y is the larger end
            self.buf.add(y, (y, m))


class _SmallStarFn(_StepFn):
    """Small-star step at each node (keyed by the larger end); edges leave in both directions (the next
    large-star step's key). A node with two or more smaller neighbours is the only way the step changes the
    edge set, so that is what it counts."""

    def step(self, node: str, nbrs: set) -> None:
        out = small_star(node, nbrs)
        if len(out) > 1:
            self.changed += 1
        for m, y in out:
            self.buf.add(m, (m, y))
            self.buf.add(y, (y, m))


class _GateFn(beam.DoFn):
    """Edge blocks go on to the next round only if the previous round changed anything; otherwise they are
    final (a round that changes nothing is the identity forever: both steps depend on the edge set only).

    The previous round's per-bundle change counts (only non-zero ones are emitted) arrive as two list side
    inputs: a Flatten and a global combine would add several stages per unrolled round, which cost more
    than the counts (one number per bundle)."""

    SETTLED = "settled"

    def process(self, block, large_changes: List[int], small_changes: List[int]):
        if large_changes or small_changes:
            yield block
        else:
            yield beam.pvalue.TaggedOutput(self.SETTLED, block)


class _ForestGateFn(beam.DoFn):
    """Edge blocks skip every round when the whole graph arrived as one local forest (``LocalForestFn``'s
    per-bundle counts, a list side input, add up to at most 1): that forest is a star forest around each
    component's smallest node, which round 0 would leave as it is. Why: on one in-process worker the
    candidate graph of a whole corpus is often one forest, and round 0's two shuffles moved 0.11 bytes per
    input byte on the T0 5k slice for nothing."""

    def process(self, block, forests: List[int]):
        if sum(forests) <= 1:
            yield beam.pvalue.TaggedOutput(_GateFn.SETTLED, block)
        else:
            yield block


class _LabelFn(beam.DoFn):
    """Per shard: every node's label from its star edges (parents: smaller neighbours, children: larger).

    Output: (shard, (packed labels, [(tag, blob), ...])): the shard is that of the node, so records that
    another input keyed the same way (``ConnectedComponents``' ``extra``, tagged blobs) arrive here already
    joined.
    """

    def __init__(self) -> None:
        self.not_converged = Metrics.counter("dedup", "cc_not_converged_nodes")
        self.nodes = Metrics.counter("dedup", "cc_nodes")

    def process(self, element):
        shard, values = element
        edges, extra = [], []
        for v in values:  # edge blobs are bytes, extra blobs arrive as (tag, bytes)
            (edges if isinstance(v, bytes) else extra).append(v)
        nbrs = _group(edges)
        labels = []
        for node in sorted(nbrs):
            ns = nbrs[node]
            labels.append(assign_label(node, [x for x in ns if x < node], [x for x in ns if x > node]))
        self.nodes.inc(len(labels))
        self.not_converged.inc(sum(1 for lab in labels if not lab[2]))
        if labels:  # extras of a shard without labels (nodes without candidate pairs) stop here
            yield shard, (pack(labels), extra)


class ConnectedComponents(beam.PTransform):
    """Edges (u, v) of doc_ids -> (shard of the node, (packed labels ((node, cluster_id, converged), ...),
    extra (tag, blob) values)); the cluster id is the smallest doc_id of the component.

    Input: the edges, or (edges, extra) where extra is (shard, (tag, bytes)) keyed like the labels (one
    PCollection or a tuple of them): it joins
    the labels in the last shuffle, which saves a join of its own (FnApiRunner materialises the Flatten of
    every join's inputs; the rounds' outputs are flattened there anyway).

    Every step is keyed by the shard of a node (shards.py), with a bundle's entries packed per shard: the
    same large-star/small-star steps, with one shuffle element per (bundle, shard) instead of one per edge
    end. A shard's reducer holds the neighbourhoods of its nodes (edges / shards entries).
    """

    def __init__(self, max_rounds: int = 10, shards: int = 4096, forests=None) -> None:
        super().__init__()
        self.max_rounds = max_rounds
        self.shards = shards
        self.forests = forests  # LocalForestFn's "forests" output, when the edges come from it

    def expand(self, inputs):
        edges, extra = inputs if isinstance(inputs, tuple) else (inputs, None)
        cur = edges | "PackEdges" >> beam.ParDo(_PackEdgesFn(self.shards))
        settled = []
        if self.forests is not None:
            gated = cur | "ForestGate" >> beam.ParDo(_ForestGateFn(), beam.pvalue.AsList(self.forests)
                                                     ).with_outputs(_GateFn.SETTLED, main="active")
            settled.append(gated[_GateFn.SETTLED])
            cur = gated.active
        for r in range(self.max_rounds):
            if r:
                gated = cur | f"Gate{r}" >> beam.ParDo(
                    _GateFn(), beam.pvalue.AsList(large[_LargeStarFn.CHANGED]),
                    beam.pvalue.AsList(small[_SmallStarFn.CHANGED])).with_outputs(_GateFn.SETTLED, main="active")
                settled.append(gated[_GateFn.SETTLED])
                cur = gated.active
            large = (cur
                     | f"LargeStarGroup{r}" >> beam.GroupByKey()
                     | f"LargeStar{r}" >> beam.ParDo(_LargeStarFn(self.shards)).with_outputs(
                         _LargeStarFn.CHANGED, main="edges"))
            small = (large.edges
                     | f"SmallStarGroup{r}" >> beam.GroupByKey()
                     | f"SmallStar{r}" >> beam.ParDo(_SmallStarFn(self.shards)).with_outputs(
                         _SmallStarFn.CHANGED, main="edges"))
            cur = small.edges
        extras = [] if extra is None else list(extra) if isinstance(extra, (tuple, list)) else [extra]
        final = [*settled, cur, *extras]
        if len(final) > 1:
            cur = tuple(final) | "AllRounds" >> beam.Flatten()
        return (cur
                | "StarGroup" >> beam.GroupByKey()
                | "Label" >> beam.ParDo(_LabelFn()))
