"""Schema of the policy's ``dedup`` section: exact + MinHash LSH near-duplicate clustering.

Why these defaults (details and measurements in docs/dedup.md):
- ``ngram: 5`` word 5-grams: short enough that instruction-sized records (~30-300 words) have dozens of
  shingles, long enough that unrelated texts sharing common phrases stay far apart.
- ``threshold: 0.8`` estimated Jaccard: copies with small edits (a changed name, a reformatted answer) sit
  above it; same-template records with different content sit below.
- ``num_perm: 128``, ``bands: 21`` x ``rows: 6``: the LSH S-curve 1-(1-s^6)^21 is 0.998 at s=0.8 (missed
  candidate ~0.2%), 0.93 at 0.7, 0.28 at 0.5 and 0.015 at 0.3, so almost every pair at the threshold
  becomes a candidate while dissimilar pairs rarely cost a verification. Verification uses all 128 values
  (standard error ~0.035 at J=0.8).
"""

from __future__ import annotations

from typing import Any, Dict

from lazaret.rules.schema import Ctx, F

SPEC: Dict[str, F] = {
    "enabled": F("bool", True, "run near-duplicate clustering when --checks includes dedup"),
    "ngram": F("int", 5, "shingle size in words; records with fewer words are exact-match only", min=1, max=64),
    "num_perm": F("int", 128, "MinHash permutations (signature length)", min=16, max=1024),
    "bands": F("int", 21, "LSH bands (b)", min=1, max=1024),
    "rows": F("int", 6, "rows per band (r); bands * rows <= num_perm", min=1, max=1024),
    "threshold": F("float", 0.8, "estimated Jaccard at or above which two records are near-duplicates",
                   min=0.05, max=1.0),
    "seed": F("int", 1, "MinHash permutation seed (changing it makes signatures incomparable)", min=0),
    "max_bucket_size": F("int", 3, "LSH buckets up to this size emit all pairs; larger ones pair members with "
                                   "the bucket_anchors smallest doc_ids only", min=2, max=10000),
    "bucket_anchors": F("int", 1, "anchors per oversized bucket", min=1, max=1000),
    "max_cc_rounds": F("int", 6, "large-star/small-star rounds unrolled in the pipeline graph", min=1, max=64),
    "local_forest_edges": F("int", 100_000, "edges buffered per bundle to pre-reduce the graph to a local "
                                           "spanning forest before connected components (0: off)", min=0,
                            max=10_000_000),
    "batch_size": F("int", 2048, "records per MinHash batch", min=1, max=100000),
    "band_shards": F("int", 4096, "shuffle shards for band keys and every other packed shuffle of the stage "
                                  "(node values, pairs, components, findings), at most: a scan uses a power "
                                  "of two near one per 8 MiB of input up to this; raise for corpora beyond "
                                  "~100M records", min=1, max=1 << 24),
    "max_exact_shingles": F("int", 2000, "records with at most this many shingles are verified with exact "
                                         "Jaccard on their shingle sets; longer ones with the MinHash estimate",
                            min=0, max=1_000_000),
    "summary_members": F("int", 50, "member doc_ids listed per cluster summary", min=1, max=100000),
    "evidence_members": F("int", 3, "members with an evidence snippet per cluster summary", min=0, max=100),
    "evidence_chars": F("int", 200, "characters per evidence snippet", min=0, max=10000),
}


def check(values: Dict[str, Any], ctx: Ctx) -> None:
    if values["bands"] * values["rows"] > values["num_perm"]:
        raise ctx.error("bands", f"bands x rows ({values['bands']} x {values['rows']}) exceeds num_perm "
                                 f"({values['num_perm']})")
    if values["evidence_members"] > values["summary_members"]:
        raise ctx.error("evidence_members", "must not exceed summary_members")
