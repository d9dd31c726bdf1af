"""Schema of the policy's ``release`` section: criteria fixed before the scan, checked by ``lazaret gate``.

Why fixed in advance: a threshold chosen after seeing the results is chosen to pass. The policy file's
sha256 is recorded in provenance.json at scan time and the gate refuses a policy edited afterwards.
Rates are fractions of ``records_in``; a null criterion is not checked.
"""

from __future__ import annotations

from typing import Any, Dict

from lazaret.rules.schema import Ctx, F, fraction


def _rate(default: float, help_: str) -> F:
    return fraction(default, help_, nullable=True)


def _count(default: Any, help_: str) -> F:
    return F("int", default, help_, min=0, nullable=True)


SPEC: Dict[str, F] = {
    "max_quarantine_rate": _rate(0.05, "records held for review (action quarantine) / records_in"),
    "max_reject_rate": _rate(0.01, "malformed or unreadable records (action reject) / records_in"),
    "max_duplicate_rate": _rate(None, "redundant copies dropped (action drop_duplicate) / records_in"),
    "max_pii_rate": _rate(0.02, "records quarantined with a pii reason / records_in"),
    "max_toxicity_rate": _rate(0.02, "records quarantined with a toxicity reason / records_in"),
    "max_poisoning_clusters": _count(None, "poisoning clusters found by the scan (reviewed or not)"),
    "require_all_poisoning_reviewed": F("bool", True,
                                        "every poisoning cluster carries a reviewer decision (confirm or release)"),
    "max_unreviewed_quarantine": _count(None, "quarantined records with no reviewer decision"),
    "max_open_incidents": _count(0, "incidents opened by confirmations and not yet closed"),
    "require_owner": F("bool", True, "the policy names an accountable owner (owner.name)"),
    "require_conservation": F("bool", True,
                              "records_in == clean + quarantine + drop_duplicate + reject held in the scan"),
}


def check(values: Dict[str, Any], ctx: Ctx) -> None:
    """No cross-field rules yet; kept so the section follows the pattern."""
    return None
