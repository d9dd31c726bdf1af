"""The scan as one Beam graph: read -> checks -> decide -> deterministic writers.

Every check is a PTransform from records to findings; adding one means adding a branch here. Nothing here
touches the local disk of the launcher: inputs and outputs go through Beam's filesystems and all
configuration travels inside the transforms (pickled), so the same graph runs on Dataflow or Flink.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Dict, List, Optional

import apache_beam as beam

from lazaret.decide import Decide, reject_row
from lazaret.io.readers import ReadFile
from lazaret.io.writers import WriteJson, WriteShards
from lazaret.mask import mask_generic
from lazaret.packing import PackedReshuffle, pack, unpack_all

ALL_CHECKS = ("pii", "toxicity", "dedup", "poisoning")
ROWS_PER_SHARD = {"clean": 5000, "held": 5000, "quarantine": 10000, "findings": 10000, "clusters": 10000}


@dataclasses.dataclass
class ScanPlan:
    """Everything the graph needs, already validated by the launcher; plain data so it pickles."""

    inputs: List[str]
    staging: str
    checks: List[str]
    sections: Dict[str, Dict[str, Any]]
    custom_recognizers: List[Dict[str, Any]]
    triggers: List[Dict[str, Any]]
    fmt: str = "auto"
    id_field: str = "id"
    max_record_bytes: int = 8 * 1024 * 1024


def finding_row(f: Dict[str, Any]) -> Dict[str, Any]:
    return {k: f[k] for k in ("doc_id", "record_id", "check", "rule", "side", "score", "detail")}


def reject_counts(rej: Dict[str, Any]):
    yield ("action", "reject")
    yield ("reason", f"malformed:{rej['rule']}")


def check_transforms(plan: ScanPlan) -> Dict[str, Any]:
    """name -> PTransform(records -> findings) (+ optional cluster summaries) for the selected checks."""
    out: Dict[str, Any] = {}
    if "pii" in plan.checks:
        from lazaret.detectors.pii import PiiCheck

        out["pii"] = PiiCheck(plan.sections["pii"], plan.custom_recognizers)
    if "toxicity" in plan.checks:
        from lazaret.detectors.toxicity import ToxicityCheck

        out["toxicity"] = ToxicityCheck(plan.sections["toxicity"])
    if "dedup" in plan.checks:
        from lazaret.dedup import NearDuplicateClusters

        out["dedup"] = NearDuplicateClusters(plan.sections["dedup"], evidence_fn=mask_generic)
    if "poisoning" in plan.checks:
        from lazaret.detectors.poisoning import PoisoningScan

        out["poisoning"] = PoisoningScan(plan.sections["poisoning"], plan.triggers)
    return out


def _as_list(value: Any) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def cluster_row(c: Dict[str, Any], check: str) -> Dict[str, Any]:
    """A check's cluster summary as a row of clusters/ (schema io.schemas.CLUSTERS); evidence masked."""
    if check == "near_duplicate":
        notes = "; ".join(c.get("notes") or [])
        statistic = f"{c.get('kind', 'minhash')} cluster, {c.get('dropped', 0)} dropped" + (f"; {notes}" if notes
                                                                                            else "")
        members = c.get("members") or []
        trigger = None
        representative = c.get("representative")
    else:
        statistic = c.get("statistic") or ""
        if c.get("p_value"):
            statistic = f"{statistic} (p={c['p_value']})" if statistic else f"p={c['p_value']}"
        members = c.get("member_doc_ids") or c.get("members") or []
        trigger = c.get("trigger_or_payload")
        representative = None
    cluster_id = str(c["cluster_id"])
    return {
        "cluster_id": cluster_id,
        "cluster_key": hashlib.sha256(f"{check}:{cluster_id}".encode()).hexdigest(),
        "check": check,
        "size": int(c.get("size") or len(members)),
        "representative": representative,
        "trigger": trigger,
        "statistic": statistic,
        "members": [str(m) for m in members],
        "evidence": [mask_generic(e) for e in _as_list(c.get("evidence"))],
    }


def with_masked_evidence(kv):
    """A cluster row with its evidence replaced by PII-masked snippets of its members from the decision step
    (members listed first, then the smallest doc_ids)."""
    _key, grouped = kv
    samples = grouped["evidence"][0] if grouped["evidence"] else []
    for row in grouped["row"]:
        listed = set(row["members"])
        ordered = sorted(samples, key=lambda s: (s[0] not in listed, s[0]))
        yield dict(row, evidence=[text for _doc, text in ordered])


def unpack_joined(kv):
    """The join's packed values (see lazaret.packing) back to records and findings, on the worker."""
    doc_id, grouped = kv
    return doc_id, {tag: unpack_all(values) for tag, values in grouped.items()}


def build(p: beam.Pipeline, plan: ScanPlan, extra_checks: Optional[Dict[str, Any]] = None) -> None:
    """``extra_checks`` (name -> PTransform(records -> findings)) are run beside the built-in ones: the
    extension point for in-house checks."""
    read = (p
            | "Inputs" >> beam.Create(plan.inputs)
            | "SpreadFiles" >> beam.Reshuffle()
            | "Read" >> beam.ParDo(ReadFile(plan.fmt, plan.id_field, plan.max_record_bytes)).with_outputs(
                ReadFile.REJECT, ReadFile.FILE, main="records"))
    records = read.records | "SpreadRecords" >> PackedReshuffle()

    finding_sets = []
    cluster_sets = []
    near_duplicates = None
    for name, transform in {**check_transforms(plan), **(extra_checks or {})}.items():
        inputs = records
        if name == "poisoning" and near_duplicates is not None:
            # the poisoning scan tests the dedup stage's clusters for planted claims (claims.py)
            inputs = {"records": records, "near_duplicates": near_duplicates}
        result = inputs | f"Check_{name}" >> transform
        if name == "dedup":
            from lazaret.detectors.poisoning.claims import cluster_member

            near_duplicates = result["findings"] | "NearDuplicateMembers" >> beam.FlatMap(cluster_member)
        if isinstance(result, dict):
            finding_sets.append(result["findings"])
            if result.get("clusters") is not None:
                check = "near_duplicate" if name == "dedup" else name
                cluster_sets.append(result["clusters"] | f"ClusterRows_{name}" >> beam.Map(cluster_row, check))
        else:
            finding_sets.append(result)
    if finding_sets:
        findings = tuple(finding_sets) | "AllFindings" >> beam.Flatten()
    else:
        findings = p | "NoFindings" >> beam.Create([])

    decided = ({"record": records | "KeyRecords" >> beam.Map(lambda r: (r["doc_id"], pack(r))),
                "findings": findings | "KeyFindings" >> beam.Map(lambda f: (f["doc_id"], pack(f)))}
               | "Join" >> beam.CoGroupByKey()
               | "UnpackJoined" >> beam.Map(unpack_joined)
               | "Decide" >> beam.ParDo(Decide(None if "pii" in plan.checks else
                                               (plan.sections["pii"], plan.custom_recognizers))).with_outputs(Decide.QUARANTINE_ROWS, Decide.HELD, Decide.COUNTS,
                                                               Decide.CLUSTER_EVIDENCE, main="clean"))

    rejects = read[ReadFile.REJECT]
    quarantine = ((decided[Decide.QUARANTINE_ROWS], rejects | "RejectRows" >> beam.Map(reject_row))
                  | "AllQuarantine" >> beam.Flatten())
    out = plan.staging
    _ = decided.clean | "WriteClean" >> WriteShards(out, "clean", "jsonl", "source", ROWS_PER_SHARD["clean"],
                                                    index_kind="clean_index")
    _ = decided[Decide.HELD] | "WriteHeld" >> WriteShards(out, "held", "jsonl", "source", ROWS_PER_SHARD["held"],
                                                          index_kind="held_index")
    _ = quarantine | "WriteQuarantine" >> WriteShards(out, "quarantine", "parquet", "source",
                                                      ROWS_PER_SHARD["quarantine"])
    _ = (findings
         | "FindingRows" >> beam.Map(finding_row)
         | "WriteFindings" >> WriteShards(out, "findings", "parquet", "finding", ROWS_PER_SHARD["findings"]))
    if cluster_sets:
        clusters = ({"row": tuple(cluster_sets) | "AllClusters" >> beam.Flatten()
                     | "KeyClusters" >> beam.Map(lambda r: (f"{r['check']}:{r['cluster_id']}", r)),
                     "evidence": decided[Decide.CLUSTER_EVIDENCE]
                     | "EvidenceSample" >> beam.combiners.Top.SmallestPerKey(Decide.EVIDENCE_PER_CLUSTER)}
                    | "JoinEvidence" >> beam.CoGroupByKey()
                    | "MaskedEvidence" >> beam.FlatMap(with_masked_evidence))
        _ = clusters | "WriteClusters" >> WriteShards(out, "clusters", "parquet", "cluster",
                                                      ROWS_PER_SHARD["clusters"], key_field="cluster_key")
    counts = ((decided[Decide.COUNTS], rejects | "RejectCounts" >> beam.FlatMap(reject_counts))
              | "AllCounts" >> beam.Flatten()
              | "CountPerKey" >> beam.combiners.Count.PerElement()
              | "CountRow" >> beam.Map(lambda kv: [kv[0][0], kv[0][1], kv[1]]))
    _ = counts | "WriteCounts" >> WriteJson(f"{out}/_counts.json")
    _ = read[ReadFile.FILE] | "WriteFiles" >> WriteJson(f"{out}/_files.json")
