"""``lazaret gate DIR [--policy FILE]``: may this scan's data be used for fine-tuning?

Exit 0 only when every release criterion of the policy holds; 1 naming each failed criterion; 2 when the
gate refuses to judge: the policy file differs from the one the scan ran under (its sha256 is recorded in
provenance.json), the policy is invalid, or DIR is not a scan. Why refuse rather than fail: criteria
must be fixed before results are seen, so a policy edited after the scan is not a policy at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

from lazaret.rules.errors import ConfigError
from lazaret.workflow.report.safetext import term
from lazaret.workflow.review import cluster_reviewed, heads, load_state, signature_problems, verify_all
from lazaret.workflow.scandir import (PolicyRefused, ScanDir, ScanError, checked_policy_path,
                                      load_policy_sections)
from lazaret.workflow.signing import KEY_ENV


class GateRefused(Exception):
    """The gate will not judge (exit 2)."""


@dataclass
class Criterion:
    name: str
    ok: bool
    measured: Any
    limit: Any
    message: str


def _rate_rows(scan: ScanDir, check: str) -> int:
    return sum(1 for q in scan.quarantine_rows() if any(r["check"] == check for r in q["reasons"]))


def evaluate(scan: ScanDir, sections: Dict[str, Dict[str, Any]]) -> List[Criterion]:
    """Every configured criterion, in a fixed order, each with what was measured and the limit."""
    rel = sections.get("release", {})
    owner = sections.get("owner", {})
    out: List[Criterion] = []
    n = scan.records_in()
    actions = scan.action_counts()

    problems = verify_all(scan)
    hd = heads(scan)
    judged = (f"judged decisions {hd['decisions']['count']} head {hd['decisions']['head'][:16]}, incidents "
              f"{hd['incidents']['count']} head {hd['incidents']['head'][:16]}, "
              + ("signed" if hd["signed"] else f"unsigned (no {KEY_ENV})"))
    out.append(Criterion("review_log_verified", not problems, len(problems), 0,
                         ("decision and incident hash chains verify; " + judged) if not problems else
                         "review log fails verification: " + "; ".join(problems[:3])))
    if rel.get("require_owner", True):
        name = (owner.get("name") or "").strip()
        out.append(Criterion("owner", bool(name), name or None, "named",
                             f"accountable owner: {name}" if name else "policy owner.name is empty"))
    if rel.get("require_conservation", True):
        cons = scan.summary().get("conservation") or {}
        total = sum(actions.values())
        holds = bool(cons.get("holds", total == n)) and total == n
        out.append(Criterion("conservation", holds, total, n,
                             f"records_in {n} == clean {actions['clean']} + quarantine {actions['quarantine']} + "
                             f"drop_duplicate {actions['drop_duplicate']} + reject {actions['reject']}"
                             + ("" if holds else " DOES NOT HOLD")))

    def rate(name: str, count: int, what: str) -> None:
        limit = rel.get(name)
        if limit is None:
            return
        r = count / n if n else 0.0
        out.append(Criterion(name, r <= limit, round(r, 6), limit,
                             f"{what}: {count}/{n} = {r:.4%} (max {limit:.4%})"))

    rate("max_quarantine_rate", actions["quarantine"], "quarantined")
    rate("max_reject_rate", actions["reject"], "rejected")
    rate("max_duplicate_rate", actions["drop_duplicate"], "dropped duplicates")
    rate("max_pii_rate", _rate_rows(scan, "pii"), "records quarantined for PII")
    rate("max_toxicity_rate", _rate_rows(scan, "toxicity"), "records quarantined for toxicity")
    first_review_criterion = len(out)

    st = load_state(scan)
    poison = [c for c in scan.clusters() if c.get("check") == "poisoning"]
    if rel.get("max_poisoning_clusters") is not None:
        lim = rel["max_poisoning_clusters"]
        out.append(Criterion("max_poisoning_clusters", len(poison) <= lim, len(poison), lim,
                             f"{len(poison)} poisoning cluster(s) found (max {lim})"))
    if rel.get("require_all_poisoning_reviewed", True):
        unreviewed = [c["cluster_id"] for c in poison if not cluster_reviewed(scan, st, c["cluster_id"])]
        out.append(Criterion("require_all_poisoning_reviewed", not unreviewed, len(unreviewed), 0,
                             f"{len(unreviewed)} of {len(poison)} poisoning cluster(s) unreviewed"
                             + (": " + ", ".join(unreviewed[:10]) + (" ..." if len(unreviewed) > 10 else "")
                                if unreviewed else "")))
    if rel.get("max_unreviewed_quarantine") is not None:
        lim = rel["max_unreviewed_quarantine"]
        k = sum(1 for q in scan.quarantine_rows() if q["action"] == "quarantine" and q["doc_id"] not in st.doc)
        out.append(Criterion("max_unreviewed_quarantine", k <= lim, k, lim,
                             f"{k} quarantined record(s) without a decision (max {lim})"))
    if rel.get("max_open_incidents") is not None:
        lim = rel["max_open_incidents"]
        open_ = st.open_incidents()
        out.append(Criterion("max_open_incidents", len(open_) <= lim, len(open_), lim,
                             f"{len(open_)} open incident(s) (max {lim})"
                             + (": " + ", ".join(i["incident_id"] for i in open_[:10]) if open_ else "")))
    if problems:
        # A log that fails verification (deleted, truncated, forged) says nothing about reviews or incidents:
        # the criteria read from it are not judged, so an emptied log never turns them into a PASS.
        for c in out[first_review_criterion:]:
            if c.name != "max_poisoning_clusters":
                c.ok = False
                c.message = f"not judged: the review log fails verification ({c.message})"
    return out


def check_policy(scan: ScanDir, policy: Optional[str]) -> Optional[str]:
    """The policy path to judge with (None: built-in defaults), after checking the scan ran under it."""
    try:
        return checked_policy_path(scan, policy)
    except PolicyRefused as exc:
        raise GateRefused(str(exc)) from None


def main(argv: Optional[Sequence[str]] = None, out=None) -> int:
    out = out or sys.stdout
    p = argparse.ArgumentParser(prog="lazaret gate", description=__doc__.split("\n\n")[0])
    p.add_argument("dir")
    p.add_argument("--policy", help="policy file (default: the path recorded in provenance.json)")
    p.add_argument("--json", action="store_true", help="print the criteria as JSON")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        scan = ScanDir(args.dir)
        sealed = signature_problems(scan)
        if sealed:
            # provenance.json (the policy's sha256 among it) cannot be trusted: do not judge at all
            raise GateRefused("; ".join(sealed))
        path = check_policy(scan, args.policy)
        sections = load_policy_sections(path)
    except (ScanError, GateRefused) as exc:
        print(f"lazaret gate: REFUSED: {term(exc)}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"lazaret gate: REFUSED: invalid policy: {term(exc)}", file=sys.stderr)
        return 2
    crits = evaluate(scan, sections)
    failed = [c for c in crits if not c.ok]
    if args.json:
        print(json.dumps({"passed": not failed, "policy": path, "review_log": heads(scan),
                          "criteria": [asdict(c) for c in crits]},
                         indent=1, default=str), file=out)
    else:
        for c in crits:
            print(f"{'PASS' if c.ok else 'FAIL'} {c.name}: {term(c.message)}", file=out)
        print(f"gate {'PASSED' if not failed else 'FAILED'}: {len(crits) - len(failed)}/{len(crits)} criteria hold"
              + (f"; failed: {', '.join(c.name for c in failed)}" if failed else ""), file=out)
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
