"""The near-duplicate check (MinHash + LSH as Beam shuffles; lazaret.checks.near_duplicate): findings and clusters.

Called ``dedup`` on the command line and in the policy, ``near_duplicate`` in the manifests.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from lazaret.checks import Check, CheckContext, CheckResult, register
from lazaret.checks.clusters import cluster_row

FINDING_NAME = "near_duplicate"


def row(summary: Dict[str, Any]) -> Dict[str, Any]:
    """A cluster summary of lazaret.checks.near_duplicate (NearDuplicateClusters) as a clusters/ row."""
    notes = "; ".join(summary.get("notes") or [])
    statistic = f"{summary.get('kind', 'minhash')} cluster, {summary.get('dropped', 0)} dropped"
    return cluster_row(FINDING_NAME, summary["cluster_id"], summary.get("members") or [], summary.get("size"),
                       representative=summary.get("representative"),
                       statistic=statistic + (f"; {notes}" if notes else ""))


def expand(records: Any, ctx: CheckContext) -> CheckResult:
    import apache_beam as beam

    from lazaret.checks.near_duplicate.shards import input_bytes
    from lazaret.checks.near_duplicate.transform import NearDuplicateClusters

    # no snippets: cluster rows get their evidence from the decision step (checks.clusters.cluster_row);
    # the shard count follows the input's size (shards.shards_for)
    inputs = getattr(ctx.plan, "inputs", None)
    size = input_bytes(inputs) if inputs is not None else None
    out = records | "Clusters" >> NearDuplicateClusters(ctx.policy, snippets=False, input_bytes=size)
    return CheckResult(out["findings"], out["clusters"] | "ClusterRows" >> beam.Map(row))


def provenance(section: Dict[str, Any], inputs: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The parameters the stage ran with: the policy's, with the shard count and band-key width it sets from the
    input's size (``transform.used_params``, as ``expand`` does), so an auditor reads what ran, not the policy's
    fallbacks (``band_shards``, 8-byte keys)."""
    from lazaret.checks.near_duplicate.shards import input_bytes
    from lazaret.checks.near_duplicate.signatures import provenance_info
    from lazaret.checks.near_duplicate.transform import used_params

    return provenance_info(used_params(section, input_bytes(inputs) if inputs is not None else None))


register(Check(name="dedup", finding_name=FINDING_NAME, policy_section="dedup", policy_schema=__name__ + ".policy",
               aliases=("near_duplicates",), expand=expand, provenance=provenance))
