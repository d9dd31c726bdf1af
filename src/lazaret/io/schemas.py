"""Arrow schemas of the manifests: the columns users and tools rely on (../shared/DESIGN.md §2)."""

from __future__ import annotations

import pyarrow as pa

REASON = pa.struct([("check", pa.string()), ("rule", pa.string()), ("score", pa.float64()),
                    ("detail", pa.string())])

QUARANTINE = pa.schema([
    ("doc_id", pa.string()),
    ("record_id", pa.string()),
    ("source_path", pa.string()),
    ("source_index", pa.int64()),
    ("content_sha256", pa.string()),
    ("action", pa.string()),
    ("duplicate_of", pa.string()),
    ("reasons", pa.list_(REASON)),
    ("cluster_id", pa.string()),
    ("evidence", pa.string()),
])

FINDINGS = pa.schema([
    ("doc_id", pa.string()),
    ("record_id", pa.string()),
    ("check", pa.string()),
    ("rule", pa.string()),
    ("side", pa.string()),
    ("score", pa.float64()),
    ("detail", pa.string()),
])

CLUSTERS = pa.schema([
    ("cluster_id", pa.string()),
    ("check", pa.string()),
    ("size", pa.int64()),
    ("representative", pa.string()),
    ("trigger", pa.string()),
    ("statistic", pa.string()),
    ("members", pa.list_(pa.string())),
    ("evidence", pa.list_(pa.string())),
])

RECORD_INDEX = pa.schema([
    ("doc_id", pa.string()),
    ("source_path", pa.string()),
    ("source_index", pa.int64()),
    ("shard", pa.string()),
    ("line", pa.int64()),
])

SCHEMAS = {"quarantine": QUARANTINE, "findings": FINDINGS, "clusters": CLUSTERS,
           "clean_index": RECORD_INDEX, "held_index": RECORD_INDEX}
