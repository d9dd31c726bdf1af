"""The finding: the one shape every check emits, so the decision step and the writers stay check-agnostic."""

from __future__ import annotations

from typing import Any, Iterable, Optional

ACTIONS = ("none", "flag", "redact", "quarantine", "drop_duplicate")
SIDES = ("prompt", "response", "all", "meta")  # meta: strings outside the text fields (PII check only)


def make_finding(
    record: dict,
    check: str,
    rule: str,
    side: str = "all",
    score: float = 0.0,
    detail: str = "",
    action: str = "none",
    cluster_id: Optional[str] = None,
    duplicate_of: Optional[str] = None,
    spans: Optional[Iterable[Iterable[Any]]] = None,
    evidence: Optional[str] = None,
) -> dict:
    """Build a finding dict for ``record``.

    Checks emit one finding per (record, rule, side) for every record they ran on, including a score of 0
    when nothing was found, so ``findings/`` can be used to study score distributions and re-threshold
    without re-running the scan.

    ``check`` is not looked up in the registry here: the registry is per process, and a check registered by
    user code on the launcher is unknown in a worker process. The scan checks the name where the check's
    findings leave it (``lazaret.graph.pipeline.OwnFindings``), with the names carried by that pickled DoFn.
    """
    if not isinstance(check, str) or not check:
        raise ValueError(f"a finding's check must be a check's manifest name, not {check!r}")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}")
    return {
        "doc_id": record["doc_id"],
        "record_id": record.get("record_id"),
        "check": check,
        "rule": rule,
        "side": side,
        "score": float(score),
        "detail": detail,
        "action": action,
        "cluster_id": cluster_id,
        "duplicate_of": duplicate_of,
        "spans": [list(s) for s in spans] if spans else [],
        "evidence": evidence,
    }
