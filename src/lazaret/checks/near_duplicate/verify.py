"""Verification of candidate pairs where their candidate component lives, with the clusters settled there.

A node record is ``(signature, shingle set, n_shingles, shard of exact_key, exact_size, doc_id)``: the first three
are what ``signatures.similarity`` reads (see ``signatures.node_values``), so a record is compared as it is.

Why verify at all: one shared band (``rows`` equal values) happens by chance for pairs far below the
threshold; without this step transitive closure chains such weak links into giant false clusters.

Why after the components, not before: the connected components of the *candidate* graph (ids only, cheap to
move) contain those of the verified graph, since a verified edge is a candidate pair. So once every node knows
its candidate component (the smallest doc_id in it), each node record travels to the shard of that root
(from its home shard, where it met its label: ``transform._AtHomeFn``), together with the component's
candidate pairs (ids), and everything else happens there: Jaccard of every
pair, the verified components by union-find (the smallest doc_id of each is its cluster id, what
large-star/small-star on the verified edges gave), the Jaccard of each member to its representative. The two
verification joins did this with a node record crossing one shuffle per candidate pair (one per pair, 14,000
pairs for 5,000 nodes on the T0 5k slice) and two more for the components and the cluster step: 3.1 bytes
per input byte there, against two crossings now, in blocks that gather near-duplicate texts (a home's, then
a component's), which the blocks' compression folds (shards.py). docs/shuffles.md has the figures.

What it costs: a shard holds the records of whole candidate components, where the cluster step held those of
verified clusters, which are subsets of them (docs/shuffles.md measures both on all of T0). If the candidate
components have not converged within ``max_cc_rounds`` (``dedup/cc_not_converged_nodes``), a pair whose ends
got different roots is not verified (``dedup/pairs_across_unconverged``) and its ends there are flagged as
not converged: the result is again a refinement of the true clusters, never a wrong merge.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Set, Tuple

NodeRecord = Tuple[bytes, bytes, int, int, int, str]  # (sig, set, n, exact-key shard, exact_size, doc_id)
# (a node record travels with its normalised text in place of the set, rebuilt here: signatures.shingle_sets)

FLUSH_ITEMS = 1 << 16  # records buffered per bundle before a flush (a node record is ~1 KB on T0)

NODE, PAIR, LABEL = "n", "p", "l"


def union_find(edges: Iterable[Tuple[str, str]]) -> Dict[str, str]:
    """node -> smallest doc_id of its connected component, for every end of ``edges``."""
    parent: Dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for u, v in edges:
        parent.setdefault(u, u)
        parent.setdefault(v, v)
        ru, rv = find(u), find(v)
        if ru != rv:
            lo, hi = (ru, rv) if ru < rv else (rv, ru)
            parent[hi] = lo
    return {x: find(x) for x in parent}


def verified_clusters(records: Mapping[str, Tuple[Any, bool]], roots: Mapping[str, str],
                      pairs: Mapping[Tuple[str, str], bool], threshold: float, similarity
                      ) -> Tuple[Dict[str, List[Tuple[str, Any, bool, bool]]], int, int, Set[str]]:
    """One candidate shard's verification: (clusters, kept, rejected, unconverged).

    ``records``: node -> (record, converged label); ``roots``: node -> its candidate root; ``pairs``: distinct
    (a, b) -> degraded. ``clusters`` maps each verified cluster id (the smallest doc_id of a component of the
    kept edges) to its members (node, record, converged, degraded), sorted by node. Pairs whose ends have
    different candidate roots (only when the components did not converge) are not verified; their ends that
    are here are returned in ``unconverged``.
    """
    kept: List[Tuple[str, str]] = []
    degraded: Set[str] = set()
    unconverged: Set[str] = set()
    rejected = 0
    for (a, b) in sorted(pairs):
        ra, rb = roots.get(a), roots.get(b)
        if ra is None or ra != rb:
            unconverged.update(x for x in (a, b) if x in roots)
            continue
        j, _exact = similarity(records[a][0], records[b][0])
        if j < threshold:
            rejected += 1
            continue
        kept.append((a, b))
        if pairs[(a, b)]:
            degraded.update((a, b))
    clusters: Dict[str, List[Tuple[str, Any, bool, bool]]] = {}
    labels = union_find(kept)
    for node in sorted(labels):
        rec, converged = records[node]
        clusters.setdefault(labels[node], []).append(
            (node, rec, converged and node not in unconverged, node in degraded))
    return clusters, len(kept), rejected, unconverged
