"""Exact-duplicate groups by hash of the normalised text, with bounded memory per key.

A CombineFn (not GroupByKey) so a document repeated 10 million times costs one small accumulator per
worker: it keeps only the representative (smallest doc_id) with its normalised text, and the group size.
"""

from __future__ import annotations

from typing import Optional, Tuple

import apache_beam as beam

# value: (doc_id, norm, n_tokens, snippet); accumulator: (best value or None, count)
Value = Tuple[str, str, int, str]


class ExactGroupFn(beam.CombineFn):
    def create_accumulator(self) -> Tuple[Optional[Value], int]:
        return None, 0

    def add_input(self, acc, value: Value):
        best, count = acc
        if best is None or value[0] < best[0]:
            best = value
        return best, count + 1

    def merge_accumulators(self, accs):
        best, count = None, 0
        for b, c in accs:
            count += c
            if b is not None and (best is None or b[0] < best[0]):
                best = b
        return best, count

    def extract_output(self, acc):
        best, count = acc
        doc_id, norm, n_tokens, snippet = best
        return doc_id, norm, n_tokens, snippet, count
