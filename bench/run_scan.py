"""Run PoisoningScan on a list of pipeline records with a real Beam runner and collect the outputs.

Records are written to a JSONL file and read back with ``ReadFromText`` (as the lead's reader would feed
the stage) rather than ``beam.Create``, which pickles and bz2-compresses the whole list into the job.
Shared by the benchmark and the tests so both exercise the real pipeline.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from lazaret.checks.poisoning.transform import PoisoningScan


def run_scan(records: List[dict], params: Optional[Dict[str, Any]] = None, runner: str = "FnApiRunner",
             extra_options: Optional[List[str]] = None, dedup: bool = True) -> Tuple[List[dict], List[dict]]:
    """(findings, clusters) of the poisoning scan over ``records``; with ``dedup`` (as ``lazaret scan``
    runs it by default) the near-duplicate stage runs first and its clusters feed the claim test."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "records.jsonl")
        with open(src, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(r) + "\n")
        opts = PipelineOptions([f"--runner={runner}"] + list(extra_options or []))
        with beam.Pipeline(options=opts) as p:
            recs = p | "Read" >> beam.io.ReadFromText(src) | "Parse" >> beam.Map(json.loads)
            inputs = recs
            if dedup:
                from lazaret.checks.near_duplicate.transform import NearDuplicateClusters
                from lazaret.checks.poisoning.claims import cluster_member

                near = (recs | NearDuplicateClusters({}))["findings"] | beam.FlatMap(cluster_member)
                inputs = {"records": recs, "near_duplicates": near}
            out = inputs | PoisoningScan(params)
            (out["findings"] | "FJson" >> beam.Map(json.dumps)
             | "WF" >> beam.io.WriteToText(os.path.join(tmp, "findings"), shard_name_template=""))
            (out["clusters"] | "CJson" >> beam.Map(json.dumps, sort_keys=True)
             | "WC" >> beam.io.WriteToText(os.path.join(tmp, "clusters"), shard_name_template=""))
        with open(os.path.join(tmp, "findings"), encoding="utf-8") as fh:
            findings = [json.loads(l) for l in fh]
        with open(os.path.join(tmp, "clusters"), encoding="utf-8") as fh:
            clusters = [json.loads(l) for l in fh]
    return findings, clusters
