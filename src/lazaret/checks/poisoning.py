"""The poisoning check (lazaret.detectors.poisoning): findings and clusters. When the near-duplicate
check runs in the same scan, its clusters are tested for planted claims (detectors/poisoning/claims.py)."""

from __future__ import annotations

from typing import Any, Dict

from lazaret.checks import Check, CheckContext, CheckResult, register
from lazaret.checks.clusters import cluster_row


def row(summary: Dict[str, Any]) -> Dict[str, Any]:
    """A poisoning cluster summary (detectors/poisoning/assign.py) as a clusters/ row."""
    statistic = summary.get("statistic") or ""
    if summary.get("p_value"):
        statistic = f"{statistic} (p={summary['p_value']})" if statistic else f"p={summary['p_value']}"
    members = summary.get("member_doc_ids") or summary.get("members") or []
    return cluster_row("poisoning", summary["cluster_id"], members, summary.get("size"),
                       trigger=summary.get("trigger_or_payload"), statistic=statistic)


def expand(records: Any, ctx: CheckContext) -> CheckResult:
    import apache_beam as beam

    from lazaret.detectors.poisoning import PoisoningScan
    from lazaret.detectors.poisoning.claims import cluster_member

    inputs = records
    near = ctx.needed.get("dedup")
    if near is not None:
        inputs = {"records": records,
                  "near_duplicates": near.findings | "NearDuplicateMembers" >> beam.FlatMap(cluster_member)}
    out = inputs | "Scan" >> PoisoningScan(ctx.policy, ctx.plan.triggers)
    return CheckResult(out["findings"], out["clusters"] | "ClusterRows" >> beam.Map(row))


def provenance(section: Dict[str, Any]) -> Dict[str, Any]:
    return {"params": section}


register(Check(name="poisoning", policy_section="poisoning", needs=("dedup",), aliases=("poison",),
               expand=expand, provenance=provenance))
