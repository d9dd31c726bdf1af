"""The poisoning check (lazaret.checks.poisoning): findings and clusters. When the near-duplicate
check runs in the same scan, its clusters are tested for planted claims (checks/poisoning/claims.py)."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from lazaret.checks import Check, CheckContext, CheckResult, register
from lazaret.checks.clusters import cluster_row


def row(summary: Dict[str, Any]) -> Dict[str, Any]:
    """A poisoning cluster summary (checks/poisoning/assign.py) as a clusters/ row."""
    statistic = summary.get("statistic") or ""
    if summary.get("p_value"):
        statistic = f"{statistic} (p={summary['p_value']})" if statistic else f"p={summary['p_value']}"
    members = summary.get("member_doc_ids") or summary.get("members") or []
    return cluster_row("poisoning", summary["cluster_id"], members, summary.get("size"),
                       trigger=summary.get("trigger_or_payload"), statistic=statistic)


def expand(records: Any, ctx: CheckContext) -> CheckResult:
    import apache_beam as beam

    from lazaret.checks.poisoning.claims import cluster_member
    from lazaret.checks.poisoning.transform import PoisoningScan

    inputs = records
    near = ctx.needed.get("dedup")
    if near is not None:
        inputs = {"records": records,
                  "near_duplicates": near.findings | "NearDuplicateMembers" >> beam.FlatMap(cluster_member)}
    out = inputs | "Scan" >> PoisoningScan(ctx.policy, ctx.rules or [])
    return CheckResult(out["findings"], out["clusters"] | "ClusterRows" >> beam.Map(row))


def load_rules(section: Dict[str, Any], rules_dir: Optional[str]) -> Tuple[List[Dict[str, Any]], List[Tuple[str, str]]]:
    """The trigger signatures (RULES/<signature_file>), when the section applies them and the file exists."""
    if not (section.get("signatures") and rules_dir):
        return [], []
    path = os.path.join(rules_dir, section["signature_file"])
    if not os.path.isfile(path):
        return [], []
    from lazaret.checks.poisoning.signatures import load_signatures

    return load_signatures(path), [(path, "triggers")]


def provenance(section: Dict[str, Any], inputs: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return {"params": section}


def models(section: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The relevance second look's sentence model (relevance.py), or why the scan ran without it. Enabled is not
    used: the metric ``poisoning/relevance_records_scored`` counts the records it read (none without a candidate)."""
    if not section.get("relevance_model"):
        return []
    from lazaret.checks.poisoning.sentence_model import DISTRIBUTION, MODEL_NAME, available, model_folder

    why = available()
    if why:
        return [{"name": MODEL_NAME, "kind": "sentence-embedding", "enabled": False, "why": why}]
    from lazaret.graph.provenance import _version, sha256_tree

    return [{"name": MODEL_NAME, "kind": "sentence-embedding", "enabled": True,
             "origin": f"PyPI {DISTRIBUTION}=={_version(DISTRIBUTION)} (sentence-transformers' Apache-2.0 "
                       "all-MiniLM-L6-v2; run as a NumPy forward pass)",
             "sha256": sha256_tree(str(model_folder()))}]


register(Check(name="poisoning", policy_section="poisoning", policy_schema=__name__ + ".policy", needs=("dedup",),
               aliases=("poison",), expand=expand, load_rules=load_rules, provenance=provenance, models=models))
