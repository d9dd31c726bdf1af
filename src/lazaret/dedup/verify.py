"""Verification of candidate pairs, as two keyed joins carrying (signature, shingle set) values.

Why joins instead of carrying signatures through the band shuffle: a signature travels ``bands`` times in the
band shuffle but only twice here (once per join), and only candidate pairs pick up a copy. Why verify at all:
one shared band (``rows`` equal values) happens by chance for pairs far below the threshold; without this
step transitive closure chains such weak links into giant false clusters.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from lazaret.dedup.signatures import similarity

Edge = Tuple[str, str, float, bool]


class _AttachLeft(beam.DoFn):
    """Join 1 (key a): send (a, sig_a) to every distinct candidate partner b."""

    def process(self, element) -> Iterator[Tuple[str, Tuple[str, bytes, bool]]]:
        a, grouped = element
        sigs = list(grouped["sig"])
        partners = {}
        for group in grouped["pair"]:
            for b, degraded in group:
                partners[b] = partners.get(b, True) and bool(degraded)
        if not sigs or not partners:
            return
        sig_a = sigs[0]  # (signature, shingle set, n, exact key, exact size); similarity() reads the first 3
        for b in sorted(partners):
            yield b, (a, sig_a, partners[b])


class _VerifyRight(beam.DoFn):
    """Join 2 (key b): Jaccard(a, b) (exact on shingle sets, else estimated) >= threshold keeps the edge.

    The node values of both ends of every kept edge also leave (output ``nodes``): the cluster step needs
    them only for nodes that have an edge, so it joins this small set instead of every signature again.
    """

    NODES = "nodes"

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.kept = Metrics.counter("dedup", "verified_edges")
        self.rejected = Metrics.counter("dedup", "rejected_candidate_pairs")

    def process(self, element) -> Iterator[Edge]:
        b, grouped = element
        sigs = list(grouped["sig"])
        if not sigs:
            return
        sig_b = sigs[0]
        for a, sig_a, degraded in grouped["inc"]:
            j, _exact = similarity(sig_a, sig_b)
            if j >= self.threshold:
                self.kept.inc()
                yield (a, b, j, degraded) if a < b else (b, a, j, degraded)
                yield beam.pvalue.TaggedOutput(self.NODES, (a, sig_a))
                yield beam.pvalue.TaggedOutput(self.NODES, (b, sig_b))
            else:
                self.rejected.inc()


def _first(values):
    """Every value of a node is the same: keep one (the smallest, so any runner keeps the same)."""
    return min(values)


class VerifyPairs(beam.PTransform):
    """(sigs: (doc_id, node value), pairs: (a, ((b, degraded), ...))) -> {"edges": (a, b, jaccard, degraded)
    with a < b, "nodes": (doc_id, node value) once per node that has an edge}."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def expand(self, pcolls):
        sigs, pairs = pcolls
        left = ({"sig": sigs, "pair": pairs}
                | "JoinLeft" >> beam.CoGroupByKey()
                | "AttachLeft" >> beam.ParDo(_AttachLeft()))
        out = ({"sig": sigs, "inc": left}
               | "JoinRight" >> beam.CoGroupByKey()
               | "Verify" >> beam.ParDo(_VerifyRight(self.threshold)).with_outputs(_VerifyRight.NODES,
                                                                                    main="edges"))
        nodes = out[_VerifyRight.NODES] | "OneValuePerNode" >> beam.CombinePerKey(_first)
        return {"edges": out.edges, "nodes": nodes}
