"""Sizes of the near-duplicate stage's candidate components and verified clusters (what one shard of the
verification holds: verify.py), from the stage's distributions ``dedup/candidate_component_nodes`` and
``dedup/cluster_nodes``.

    .venv/bin/python bench/dedup_components.py /tmp/lazaret_dedup_t0_x1.jsonl   # all of T0 (bench/dedup_speed.py writes it)

Input: JSONL of records with ``doc_id`` and ``text``. Runs ``NearDuplicateClusters`` (policy defaults) on the
in-process runner and prints the stage's counters and distributions.
"""

from __future__ import annotations

import json
import sys

import apache_beam as beam

from lazaret.checks.near_duplicate.transform import NearDuplicateClusters


def main(path: str) -> None:
    p = beam.Pipeline(runner="FnApiRunner")
    _ = p | beam.io.ReadFromText(path) | beam.Map(json.loads) | NearDuplicateClusters({}, snippets=False)
    result = p.run()
    result.wait_until_finish()
    metrics = result.metrics().query()
    for c in sorted(metrics["counters"], key=lambda c: c.key.metric.name):
        print(f"{c.key.metric.name}: {c.committed}")
    for d in sorted(metrics["distributions"], key=lambda d: d.key.metric.name):
        v = d.committed
        print(f"{d.key.metric.name}: count {v.count}, max {v.max}, mean {v.sum / max(v.count, 1):.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
