"""Schema of the policy's ``incidents`` section: which confirmed findings open an incident, and how severe.

An incident is opened by ``lazaret review DIR confirm`` (a reviewer confirming that a finding is real, e.g. a
poisoning cluster or a personal-data leak), never by the scan alone: a detector score is a suspicion,
a confirmation is a fact someone signed. Open incidents count against the release gate
(``release.max_open_incidents``) until closed with ``lazaret review DIR close``.
"""

from __future__ import annotations

from typing import Any, Dict

from lazaret.rules.schema import Ctx, F

SEVERITIES = ("low", "medium", "high", "critical")

SPEC: Dict[str, F] = {
    "open_on_confirm": F("map", {"poisoning": "critical", "pii": "high"},
                         "check -> severity: confirming a finding of this check opens an incident",
                         item=F("str", choices=SEVERITIES)),
    "pii_rules": F("list", [],
                   "PII rules (entity types) whose confirmation counts as a leak; empty: every PII rule",
                   item=F("str")),
    "notify": F("list", [], "who must be told (recorded in each incident entry; lazaret sends nothing)",
                item=F("str")),
}


def check(values: Dict[str, Any], ctx: Ctx) -> None:
    from lazaret.checks import manifest_names

    known = manifest_names()
    for name in values["open_on_confirm"]:
        if name not in known:
            raise ctx.error(f"open_on_confirm.{name}", f"unknown check (known: {', '.join(known)})")
